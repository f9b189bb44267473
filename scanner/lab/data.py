"""The lab's CIFAR-10 draws: the games' train/pool/test split and the benchmarks' test draw.

Games (``scanner.lab.robustness``, ``scanner.lab.detectability``): the first ``train_size``
training images train the models (the recipe cache's data); trusted images are drawn,
class-balanced and nested (the 1 % set is inside the 2.5 % set), from the training images
*after* those, which no model saw; CDA and ASR are measured on a class-stratified slice of the
test split.

Benchmarks (``scan eval bench-detect`` / ``bench-repair``): ``N`` trusted images from a seeded
class-stratified draw of the CIFAR-10 *test* split, and 2 000 other test images that measure the
real trigger's ASR and the clean accuracy; the scanner never sees those.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from scanner.errors import InputError
from scanner.io.data import TrustedData


@dataclass
class GameData:
    """Training images (model recipes), a pool of unseen trusted images, and a test set."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_pool: torch.Tensor
    y_pool: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 0

    def __post_init__(self) -> None:
        if not self.num_classes:
            self.num_classes = int(max(int(self.y_train.max()), int(self.y_test.max()))) + 1

    def n_trusted(self, r: float) -> int:
        """``r`` < 1: a fraction of the training-set size; ``r`` >= 1: a number of images."""
        n = int(round(r * len(self.y_train))) if r < 1 else int(round(r))
        if n < 2:
            raise InputError(f"r={r:g} gives {n} trusted image(s); need at least 2")
        if n > len(self.y_pool):
            raise InputError(f"r={r:g} needs {n} trusted images but the pool of unseen images "
                             f"holds {len(self.y_pool)}",
                             hint="lower --train-size or r (the pool is what follows the "
                                  "training images in CIFAR-10's 50 000)")
        return n

    def trusted(self, r: float, seed: int = 0) -> TrustedData:
        """A class-balanced draw of ``n_trusted(r)`` pool images; nested in ``r`` for a seed."""
        n = self.n_trusted(r)
        order = np.sort(balanced_order(self.y_pool, seed)[:n])
        return TrustedData(self.x_pool[order], self.y_pool[order], source=f"pool r={r:g} seed={seed}")


def balanced_order(y: torch.Tensor, seed: int) -> np.ndarray:
    """Indices interleaving seeded per-class permutations (class 0, 1, ..., 0, 1, ...)."""
    g = np.random.default_rng(10_000 + seed)
    yy = y.numpy()
    per = [g.permutation(np.flatnonzero(yy == c)) for c in np.unique(yy)]
    out = []
    for i in range(max(len(p) for p in per)):
        out.extend(int(p[i]) for p in per if i < len(p))
    return np.array(out, dtype=np.int64)


def load_game_data(train_size: int, pool_size: int, test_size: int = 2000) -> GameData:
    """CIFAR-10 from ``../shared/data/cifar10`` (or ``$SCAN_CIFAR10_DIR``)."""
    from scanner.attacks.train import load_subset
    from scanner.io.cifar import shared_cifar10_dir

    if shared_cifar10_dir() is None:
        raise InputError("the evaluation games need the CIFAR-10 archive, which was not found "
                         "(expected ../shared/data/cifar10 beside the project)",
                         hint="set SCAN_CIFAR10_DIR to a folder holding train_0..4.npz and test.npz")
    if train_size < 2 or pool_size < 0 or train_size + pool_size > 50_000:
        raise InputError(f"--train-size {train_size} plus {pool_size} trusted images exceed "
                         "CIFAR-10's 50 000 training images")
    if not 1 <= test_size <= 10_000:
        raise InputError(f"--test-size must be in [1, 10000], got {test_size}")
    x, y, xt, yt = load_subset(train_size + pool_size, test_size)
    return GameData(x[:train_size], y[:train_size], x[train_size:], y[train_size:], xt, yt)


@lru_cache(maxsize=2)  # a benchmark worker scans several models on the same data
def benchmark_draw(n_trusted: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(x_trusted, y_trusted, x_eval, y_eval): the benchmarks' test-split draw (module doc)."""
    from scanner.io.cifar import load_cifar10, to_tensor

    x, y = load_cifar10("test")
    g = np.random.default_rng(seed)
    order = np.concatenate([g.permutation(np.flatnonzero(y == c)) for c in range(10)])
    per = n_trusted // 10
    trusted = np.concatenate([order[c * 1000: c * 1000 + per] for c in range(10)])
    rest = np.setdiff1d(np.arange(len(y)), trusted)
    ev = g.choice(rest, 2000, replace=False)
    return (to_tensor(x[trusted]), torch.from_numpy(y[trusted]), to_tensor(x[ev]),
            torch.from_numpy(y[ev]))
