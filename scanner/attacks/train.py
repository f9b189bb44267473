"""Training clean and poisoned models the way the paper does (Table 4), sized for a CPU.

Why here and not in a generic trainer: the one non-negotiable detail is that triggers are stamped
*after* augmentation (a patch stamped before a random crop moves around and the backdoor barely
takes: 3 % ASR in our CPU runs). The trainer gets un-stamped batches from :class:`PoisonedSet`,
augments them, then re-stamps; training-process attacks (PCB) plug in through a hook.

Defaults: SGD, momentum 0.9, Nesterov, lr 0.1, weight decay 5e-4, cosine annealing (per step),
batch 128, random crop (pad 4) + horizontal flip, channels_last. Deterministic for a seed on CPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scanner.attacks.base import Attack, PoisonedSet, check_images, check_labels
from scanner.classifier import predict
from scanner.device import resolve_device
from scanner.errors import InputError
from scanner.ops.metrics import accuracy

ProgressFn = Callable[[int, int, dict], None]


def random_crop_flip(x: Tensor, generator: torch.Generator | None = None, pad: int = 4,
                     flip: bool = True) -> Tensor:
    """CIFAR augmentation on a batch: zero-pad by ``pad``, crop back at a random offset per image,
    mirror half of the images. One generator drives both, so a seed fixes the whole epoch."""
    n, c, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        top = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        left = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        rows = (top[:, None] + torch.arange(h))[:, :, None]
        cols = (left[:, None] + torch.arange(w))[:, None, :]
        x = padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mirror = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    return x.contiguous()


@dataclass
class TrainHistory:
    """Per-epoch records (epoch, loss, train_acc, lr, seconds, hook_loss) and total wall time."""

    epochs: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    poisoned: PoisonedSet | None = None


@dataclass
class _Step:
    """The :class:`scanner.attacks.base.StepContext` handed to training-process hooks."""

    model: nn.Module
    step: int
    lr: float
    batch_size: int
    generator: torch.Generator
    make_batch: Callable[[Tensor], tuple[Tensor, Tensor]]


def _build(arch: str | nn.Module, num_classes: int, in_channels: int, seed: int) -> nn.Module:
    if isinstance(arch, nn.Module):
        return arch
    from scanner.models.registry import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch, num_classes=num_classes, in_channels=in_channels)


def train_model(arch: str | nn.Module, x: Tensor | None = None, y: Tensor | None = None, *,
                attack: Attack | None = None, poisoned: PoisonedSet | None = None,
                epochs: int, batch_size: int = 128, lr: float = 0.1, weight_decay: float = 5e-4,
                momentum: float = 0.9, seed: int = 0, device: str | torch.device = "auto",
                augment: bool = True, num_classes: int | None = None,
                progress: ProgressFn | None = None,
                channels_last: bool = True) -> tuple[nn.Module, TrainHistory]:
    """Train ``arch`` (a registry name, or a module trained in place) and return it in eval mode.

    Give either the clean set ``x, y`` (poisoned by ``attack`` when one is given) or an already
    poisoned set via ``poisoned``. ``progress(epoch, epochs, record)`` is called after each epoch.
    """
    if poisoned is not None:
        if x is not None or y is not None:
            raise InputError("train_model: pass either x, y (and optionally attack) or poisoned=")
        if attack is not None and poisoned.attack is not attack:
            raise InputError("train_model: poisoned= was made by a different attack")
    else:
        if x is None or y is None:
            raise InputError("train_model needs training images x and labels y")
        check_images(x)
        y = check_labels(y, len(x))
        poisoned = attack.poison(x, y) if attack is not None else PoisonedSet.clean(x, y)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"epochs must be a positive integer, got {epochs!r}")
    if batch_size < 2:
        raise InputError("batch_size must be at least 2 (BatchNorm needs two samples)")
    if not lr > 0:
        raise InputError(f"lr must be positive, got {lr}")
    attack = poisoned.attack
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    min_classes = int(poisoned.y.max()) + 1
    if attack is not None:
        min_classes = max(min_classes, attack.config.target + 1)
    if num_classes is None:
        num_classes = min_classes
    elif num_classes < min_classes:
        raise InputError(f"num_classes={num_classes} but labels/target need {min_classes}")
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    model = _build(arch, num_classes, poisoned.x.shape[1], seed).to(dev, memory_format=fmt)
    model.train()
    g = torch.Generator().manual_seed(seed)
    aug = random_crop_flip if augment else None

    def make_batch(idx: Tensor) -> tuple[Tensor, Tensor]:
        xb, yb = poisoned.batch(idx, aug, g)
        return xb.to(dev).contiguous(memory_format=fmt), yb.to(dev)

    regular = poisoned.regular
    if len(regular) < 2:
        raise InputError("train_model: fewer than two training samples")
    steps_per_epoch = math.ceil(len(regular) / batch_size)
    if len(regular) % batch_size == 1:
        steps_per_epoch -= 1  # a 1-sample batch breaks BatchNorm; drop it
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0,
                          weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    hook = attack.training_hook(model, poisoned, lr=lr, momentum=momentum) if attack else None

    history = TrainHistory(poisoned=poisoned)
    t_start = time.perf_counter()
    step = 0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = regular[torch.randperm(len(regular), generator=g)]
        loss_sum, correct, seen, hook_sum = 0.0, 0, 0, 0.0
        for b in range(steps_per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb, yb = make_batch(idx)
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            lr_now = opt.param_groups[0]["lr"]
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            seen += len(idx)
            if hook is not None:
                hook_loss = hook.after_step(_Step(model, step, lr_now, batch_size, g, make_batch))
                hook_sum += float(hook_loss or 0.0)
            sched.step()
            step += 1
        record = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1),
                  "train_acc": correct / max(seen, 1), "lr": lr_now,
                  "seconds": time.perf_counter() - t0}
        if hook is not None:
            record["hook_loss"] = hook_sum / max(steps_per_epoch, 1)
        history.epochs.append(record)
        if progress is not None:
            progress(epoch + 1, epochs, record)
    history.wall_s = time.perf_counter() - t_start
    model.eval()
    return model, history


def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    """Clean data accuracy (CDA)."""
    check_images(x)
    y = check_labels(y, len(x))
    if len(y) == 0:
        raise InputError("evaluate: empty test set")
    return accuracy(predict(model, x, batch_size), y)


def attack_success_rate(model: nn.Module, attack: Attack, x_test: Tensor, y_test: Tensor,
                        batch_size: int = 512) -> float:
    """Fraction of triggered test images, among those whose target (``attack.target_of``) is not
    their true label, that the model classifies as their target (paper §3; for a single-target
    attack this is :func:`scanner.ops.metrics.attack_success_rate`, and all-to-all targets count
    per image). Unlike that one, a test set with no such image is an input error here."""
    check_images(x_test)
    y_test = check_labels(y_test, len(x_test))
    target = attack.target_of(y_test)
    keep = y_test != target
    if not bool(keep.any()):
        raise InputError("attack_success_rate: every test image is of its target class")
    stamped = torch.cat([attack.apply(xb) for xb in x_test[keep].split(batch_size)])
    return float((predict(model, stamped, batch_size) == target[keep]).float().mean())


def load_subset(train_size: int, test_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The first ``train_size`` CIFAR-10 training images (the shards are already shuffled) and
    a class-stratified ``test_size`` slice of the test set (which is sorted by class).

    Why here: the recipes train on it, and the lab's games and benchmarks draw their data from
    it too, so there is one definition of "the first N images".
    """
    import numpy as np

    from scanner.io.cifar import decode_jpeg_npz, shared_cifar10_dir, to_tensor

    root = shared_cifar10_dir()
    if root is None:
        raise InputError("CIFAR-10 archive not found (expected ../shared/data/cifar10)")
    xs, ys, need = [], [], train_size
    for k in range(5):
        if need <= 0:
            break
        x, y = decode_jpeg_npz(root / f"train_{k}.npz", limit=need)
        xs.append(x)
        ys.append(y)
        need -= len(y)
    x_tr, y_tr = np.concatenate(xs), np.concatenate(ys)
    step = max(1, 10_000 // test_size)
    x_te, y_te = decode_jpeg_npz(root / "test.npz", indices=np.arange(0, 10_000, step)[:test_size])
    return (to_tensor(x_tr), torch.from_numpy(y_tr), to_tensor(x_te), torch.from_numpy(y_te))
