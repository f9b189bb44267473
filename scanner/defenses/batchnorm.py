"""Put BatchNorm back into a BN-folded model for training, and fold it out again afterwards.

Why: exporters fold BatchNorm into the preceding Conv, so an imported model is a plain conv net
whose layers have very different weight scales (gamma/sigma baked in). Fine-tuning such a net is
badly conditioned: the paper's step size diverges within a few steps and a safe one moves almost
nothing. Re-inserting a BatchNorm after every Conv that lacks one - calibrated on the trusted data
so that the model computes the same function in eval mode - restores the training dynamics the
paper's recipe was designed for (train-mode batch statistics, lr 1e-2). The extra BatchNorms are
folded back into their Convs before export, so the repaired file has the input's structure.

The BatchNorm lives *on* the Conv (a child module plus a forward hook), not in the graph: the
fx graph module, its feature extractor and head share the Conv objects, so all of them see it,
and ``copy.deepcopy`` carries it along.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_ATTR = "scan_bn"


def _apply_bn(module: nn.Module, _inputs, output: Tensor) -> Tensor:
    return getattr(module, _ATTR)(output)


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and not hasattr(m, _ATTR)]


@torch.no_grad()
def unfold_batchnorm(model: nn.Module, x: Tensor, batch_size: int = 256,
                     eps: float = 1e-5) -> int:
    """Attach a calibrated BatchNorm2d to every Conv2d of ``model`` (in place); return how many.

    Calibration: per-channel mean and variance of each Conv's output over ``x``; the BatchNorm's
    running statistics are set to them and its affine parameters to (sqrt(var + eps), mean), so in
    eval mode it is the identity and the model's outputs do not change.
    """
    convs = _convs(model)
    if not convs:
        return 0
    sums: dict[nn.Conv2d, list[Tensor]] = {c: [] for c in convs}

    def record(mod: nn.Module, _i, out: Tensor) -> None:
        o = out.double()
        sums[mod].append(torch.stack([o.sum((0, 2, 3)), (o * o).sum((0, 2, 3)),
                                      torch.full_like(o[0, :, 0, 0], o.numel() / o.shape[1])]))

    hooks = [c.register_forward_hook(record) for c in convs]
    was_training = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size].to(dev))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for conv in convs:
        if not sums[conv]:
            continue  # a Conv the forward pass never reached
        s, ss, n = torch.stack(sums[conv]).sum(0)
        mean = s / n
        var = (ss / n - mean * mean).clamp_min(0)
        bn = nn.BatchNorm2d(conv.out_channels, eps=eps).to(device=conv.weight.device)
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
        bn.weight.copy_(torch.sqrt(var + eps).float())
        bn.bias.copy_(mean.float())
        conv.add_module(_ATTR, bn)
        conv.register_forward_hook(_apply_bn)
    return sum(hasattr(c, _ATTR) for c in convs)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm attached by :func:`unfold_batchnorm` back into its Conv (in place).

    Uses the running statistics (eval-mode semantics); returns how many were folded.
    """
    n = 0
    for conv in [m for m in model.modules() if isinstance(m, nn.Conv2d) and hasattr(m, _ATTR)]:
        bn: nn.BatchNorm2d = getattr(conv, _ATTR)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale + bn.bias
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias)
        else:
            conv.bias.copy_(new_bias)
        for k, hook in list(conv._forward_hooks.items()):
            if hook is _apply_bn:
                del conv._forward_hooks[k]
        del conv._modules[_ATTR]
        n += 1
    return n
