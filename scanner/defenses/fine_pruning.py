"""Fine-Pruning baseline (Liu et al. 2018; paper App. A.3, Table 5).

1. Measure the mean absolute activation of every channel of the LAST convolution on trusted data
   (``sampled_batches`` batches, Table 5: 10).
2. Zero the ``prune_rate`` (rho, Table 5: 96 % on CIFAR-10) lowest-activation channels: the conv's
   out-channel weights and bias, and - when the conv feeds a BatchNorm directly (models with BN
   not folded) - that BN's weight and bias, so the channel's output is exactly 0 in eval mode.
3. Fine-tune with cross-entropy; the pruned entries are re-zeroed after every optimizer step.

Pruning is plain zeroed weights, so it survives ONNX export with no mask op or hook.

"Last conv" is found on the fx graph of ``feature_net`` (imported ONNX models and our own models
alike): the Conv2d node with the longest path from the input, ties broken by graph order. Why not
simply the last conv in graph order: a ResNet's final block may end with a 1x1 shortcut conv that
is traced after the main-path conv; the longest path picks the main path. In a ResNet the pruned
channel still carries the shortcut, as in common Fine-Pruning ports that prune the last block's
conv weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from scanner.classifier import SplitClassifier
from scanner.defenses.base import (FinetuneConfig, LoopHooks, Monitor, ProgressFn, RepairResult,
                                   ce_step, finetune_loop, heldout_accuracy, pick_lr, sgd_cosine,
                                   start_repair)
from scanner.defenses.registry import DEFENSES
from scanner.errors import InconclusiveError
from scanner.io.trusted_split import TrustedSplit


@dataclass
class FinePruningConfig(FinetuneConfig):
    """Fine-Pruning knobs; method-specific defaults from Table 5 (CIFAR-10)."""

    weight_decay: float = 0.0  # Table 5
    prune_rate: float = 0.96  # Table 5 rho (ImageNet: 0.73)
    sampled_batches: int = 10  # Table 5: batches used to measure activations


@dataclass
class PruneTarget:
    """Where to prune: paths inside ``model.feature_net`` (valid in any clone of the model)."""

    conv_path: str
    bn_path: str | None
    channels: int

    def conv(self, model: SplitClassifier) -> nn.Conv2d:
        return model.feature_net.get_submodule(self.conv_path)

    def bn(self, model: SplitClassifier) -> nn.Module | None:
        return model.feature_net.get_submodule(self.bn_path) if self.bn_path else None

    def output_module(self, model: SplitClassifier) -> nn.Module:
        """The module whose output is the channel's activation (the BN if any, else the conv)."""
        return self.bn(model) or self.conv(model)


def _conv_path(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """Path of the Conv2d a call_module node runs (onnx2torch wraps padded convs in Sequential)."""
    if node.op != "call_module":
        return None
    mod = gm.get_submodule(str(node.target))
    if isinstance(mod, nn.Conv2d):
        return str(node.target)
    if isinstance(mod, nn.Sequential) and len(mod) and isinstance(mod[-1], nn.Conv2d):
        return f"{node.target}.{len(mod) - 1}"
    return None


def find_prune_target(model: SplitClassifier) -> PruneTarget:
    """The last conv of ``model.feature_net`` (longest path from the input) and its direct BN."""
    gm = model.feature_net
    if not isinstance(gm, fx.GraphModule):
        raise InconclusiveError("Fine-Pruning needs an fx-traced feature network")
    depth: dict[fx.Node, int] = {}
    best: tuple[int, fx.Node, str] | None = None
    for node in gm.graph.nodes:
        depth[node] = 1 + max((depth[a] for a in node.all_input_nodes), default=-1)
        path = _conv_path(gm, node)
        if path is not None and (best is None or depth[node] >= best[0]):
            best = (depth[node], node, path)
    if best is None:
        raise InconclusiveError("Fine-Pruning found no Conv2d layer in the model's features")
    _, node, path = best
    bn_path = None
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_module":
        user = gm.get_submodule(str(users[0].target))
        if isinstance(user, nn.modules.batchnorm._BatchNorm):
            bn_path = str(users[0].target)
    conv = gm.get_submodule(path)
    return PruneTarget(path, bn_path, conv.out_channels)


@torch.no_grad()
def channel_activations(model: SplitClassifier, target: PruneTarget, x: torch.Tensor,
                        batch_size: int = 128) -> torch.Tensor:
    """Mean |activation| per channel of the target's output over ``x`` (eval mode)."""
    acts: list[torch.Tensor] = []
    hook = target.output_module(model).register_forward_hook(
        lambda _m, _i, out: acts.append(out.detach().abs().mean(dim=(0, 2, 3)) * out.shape[0]))
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size].to(dev))
    finally:
        hook.remove()
        model.train(was_training)
    return (torch.stack(acts).sum(0) / max(1, len(x))).cpu()


def prune_count(rate: float, channels: int) -> int:
    """round(rate * C), at least 0 and at most C - 1 (a layer with no channel left is dead)."""
    return int(min(channels - 1, max(0, round(rate * channels))))


@torch.no_grad()
def zero_channels(model: SplitClassifier, target: PruneTarget, idx: torch.Tensor) -> None:
    """Zero out-channels ``idx`` of the target conv (weight, bias) and of its BN (weight, bias)."""
    conv = target.conv(model)
    conv.weight[idx.to(conv.weight.device)] = 0
    if conv.bias is not None:
        conv.bias[idx.to(conv.bias.device)] = 0
    bn = target.bn(model)
    if bn is not None and getattr(bn, "weight", None) is not None:
        bn.weight[idx.to(bn.weight.device)] = 0
        bn.bias[idx.to(bn.bias.device)] = 0


@DEFENSES.register("fine_pruning", config=FinePruningConfig, rank=1)
def fine_pruning(pivot: SplitClassifier, split: TrustedSplit, cfg: FinePruningConfig, *,
                 device: torch.device | None = None, monitor: Monitor | None = None,
                 progress: ProgressFn | None = None) -> RepairResult:
    """Fine-Pruning: zero the lowest-activation channels of the last conv, then fine-tune."""
    run, tuned = start_repair(pivot, split, device, cfg.seed)
    pivot, g = run.pivot, run.g
    target = find_prune_target(tuned)
    n_probe = min(len(split.tune.y), cfg.sampled_batches * cfg.batch_size)
    probe = split.tune.x[torch.randperm(len(split.tune.y), generator=g)[:n_probe]]
    act = channel_activations(pivot, target, probe, cfg.batch_size)
    k = prune_count(cfg.prune_rate, target.channels)
    idx = torch.sort(torch.argsort(act, stable=True)[:k]).values
    zero_channels(tuned, target, idx)
    pruned_cda = heldout_accuracy(tuned, split.held.x, split.held.y)
    lr, kind = pick_lr(cfg, tuned)
    pruned_extra = monitor(tuned) if monitor else {}
    notes = [f"lr {lr:g} ({kind}); pruned {k}/{target.channels} channels of "
             f"{target.conv_path}" + (f" (+ {target.bn_path})" if target.bn_path else "")
             + f", ranked on {n_probe} images; held-out accuracy right after pruning "
             f"{pruned_cda:.3f}" + "".join(f", {n} {v:.3f}" for n, v in pruned_extra.items()
                                            if isinstance(v, float))]
    if k < round(cfg.prune_rate * target.channels):
        notes.append(f"prune rate {cfg.prune_rate:g} would remove every channel; kept one")
    opt, sched = sgd_cosine(tuned.parameters(), lr, cfg.steps, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay)
    res = finetune_loop(run, tuned, cfg, ce_step(tuned), opt, sched, notes,
                        LoopHooks(monitor=monitor, progress=progress,
                                  after_step=lambda m: zero_channels(m, target, idx)))
    res.info.update(prune_layer=target.conv_path, prune_bn=target.bn_path,
                    pruned_channels=idx.tolist(), channels=target.channels,
                    pruned_cda=pruned_cda, pruned_extra=pruned_extra)
    return res


