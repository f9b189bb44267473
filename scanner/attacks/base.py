"""The one place that owns the mechanics every data-poisoning attack shares.

Why one base class: the paper's claims about detectability hinge on poisoning being done the same
way for every attack (m samples, drawn without replacement, class sizes constant, clean-label
attacks touching only the target class). Putting sample selection, relabelling, boosting and
seeding here means an attack module only says what its trigger looks like, and the contract test
checks all of them at once.

Vocabulary:
- *poisoned* rows carry the training-time trigger (payload rows get the target label; the
  Adaptive attacks' regularisation rows keep their true label).
- *noise* rows (WaNet's "cross" samples) carry a label-preserving random perturbation.
- The trigger is stamped again **after** data augmentation during training: the trainer asks a
  :class:`PoisonedSet` for an un-stamped batch, augments it, then calls :meth:`Attack.stamp_train`
  on the stamped rows. (A patch stamped before a random crop lands in a different place each
  epoch; on CPU runs that gave 3 % ASR instead of ~100 %.)
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Protocol

import torch
from torch import Tensor, nn

from scanner.errors import InputError
from scanner.registry import Registry

Params = dict[str, Tensor]


@dataclass
class AttackConfig:
    """Settings every attack understands. Subclasses add their trigger's knobs.

    target: the class the backdoor maps to. m: number of distinct training samples poisoned.
    seed: every random choice (samples, masks, positions, trigger pictures) derives from it.
    boost: the paper's b; each poisoned sample appears b times (ImageNet clean-label runs use 50).
    conservatism: fraction of poisoned samples that keep their true label (Adaptive-* use 0.5).
    """

    target: int = 0
    m: int = 50
    seed: int = 0
    boost: int = 1
    conservatism: float = 0.0

    def __post_init__(self) -> None:
        _check_int(self, "target", lo=0)
        _check_int(self, "m", lo=1)
        _check_int(self, "seed", lo=0)
        _check_int(self, "boost", lo=1)
        _check_float(self, "conservatism", lo=0.0, hi=1.0, hi_open=True)


def _check_int(cfg: Any, name: str, lo: int | None = None, hi: int | None = None) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"{type(cfg).__name__}.{name} must be an integer, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InputError(f"{type(cfg).__name__}.{name}={v} out of range [{lo}, {hi}]")


def _check_float(cfg: Any, name: str, lo: float | None = None, hi: float | None = None,
                 hi_open: bool = False) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"{type(cfg).__name__}.{name} must be a number, got {v!r}")
    too_high = hi is not None and (v >= hi if hi_open else v > hi)
    if (lo is not None and v < lo) or too_high:
        bound = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
        raise InputError(f"{type(cfg).__name__}.{name}={v} out of range {bound}")


def check_images(x: Tensor, name: str = "x") -> None:
    """Reject anything that is not a float N x C x H x W batch in [0, 1] (the package convention)."""
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise InputError(f"{name} must be N x C x H x W, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a float tensor in [0, 1], got {x.dtype}",
                         hint="convert uint8 images with scanner.io.cifar.to_tensor")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise InputError(f"{name} has values outside [0, 1] (min {float(x.min()):.3g}, "
                         f"max {float(x.max()):.3g}); normalisation belongs after the trigger")


def check_labels(y: Tensor, n: int) -> Tensor:
    if not isinstance(y, Tensor) or y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise InputError("labels must be a 1-D integer tensor")
    if len(y) != n:
        raise InputError(f"{n} images but {len(y)} labels")
    if len(y) and int(y.min()) < 0:
        raise InputError("labels must be non-negative class indices")
    return y.long()


def subset_params(params: Params, rows: Tensor) -> Params:
    return {k: v[rows] for k, v in params.items()}


@dataclass
class PoisonedSet:
    """A poisoned training set plus what the trainer needs to re-stamp triggers after augmentation.

    x, y: the set as an attacker would publish it (triggers stamped once, labels final).
    poisoned: indices into x of the rows carrying the trigger (m * boost of them).
    noise: indices of label-preserving noise rows (WaNet); empty for other attacks.
    source: for every row, the index of the input sample it came from (boost copies repeat it).
    true_y: the input label of every row, so relabelling can be audited.
    regular: rows drawn by ordinary training steps (all rows, except where a training-process
      attack such as PCB feeds its poison through its own steps).
    stamp_rows / base / params: for every row, -1 or its row in ``base`` (the image before the
      training trigger, after any fixed per-image perturbation) and in ``params`` (per-sample
      trigger parameters fixed at poisoning time: masks, positions, trigger ids).
    """

    x: Tensor
    y: Tensor
    poisoned: Tensor
    noise: Tensor
    source: Tensor
    true_y: Tensor
    regular: Tensor
    stamp_rows: Tensor
    base: Tensor
    params: Params
    attack: "Attack | None" = None

    @classmethod
    def clean(cls, x: Tensor, y: Tensor) -> "PoisonedSet":
        """The unpoisoned set in the same shape, so one trainer path serves clean baselines too."""
        n = len(y)
        empty = torch.empty(0, dtype=torch.long)
        return cls(x=x, y=y.long(), poisoned=empty, noise=empty.clone(), source=torch.arange(n),
                   true_y=y.long(), regular=torch.arange(n),
                   stamp_rows=torch.full((n,), -1, dtype=torch.long),
                   base=x.new_empty((0, *x.shape[1:])), params={})

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, idx: Tensor, augment: Callable[[Tensor, torch.Generator | None], Tensor] | None = None,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Images and labels for rows ``idx``: un-stamped, augmented, then triggers stamped again."""
        x = self.x[idx]
        rows = self.stamp_rows[idx]
        sel = rows >= 0
        has = bool(sel.any())
        if has:
            x[sel] = self.base[rows[sel]]
        if augment is not None:
            x = augment(x, generator)
        if has and self.attack is not None:
            x[sel] = self.attack.stamp_train(x[sel], subset_params(self.params, rows[sel]), generator)
        return x, self.y[idx]


class StepContext(Protocol):
    """What the trainer exposes to a training-process hook after each ordinary step."""

    model: nn.Module
    step: int
    lr: float
    batch_size: int
    generator: torch.Generator

    def make_batch(self, idx: Tensor) -> tuple[Tensor, Tensor]: ...


class TrainHook(Protocol):
    def after_step(self, ctx: StepContext) -> float | None: ...


def _load_builtin() -> None:
    import scanner.attacks  # noqa: F401  (importing the package registers the built-in attacks)


# Attack classes by name: ``@ATTACKS.register("badnets")`` on each class, whose ``name``
# attribute is the same string (the contract test checks both agree).
ATTACKS: Registry[type["Attack"]] = Registry("attack", loader=_load_builtin)


class Attack:
    """A data-poisoning attack: pick samples, stamp a trigger, relabel (or not).

    Subclasses set ``name``, ``clean_label`` and ``Config``, register with ``@ATTACKS.register``
    under their ``name``, and implement :meth:`_stamp` (the training-time trigger on a batch with
    per-sample ``params``) and, when it differs, :meth:`_apply` (the inference-time trigger).
    Optional hooks: :meth:`_sample_params`, :meth:`_prepare` (a fixed per-image perturbation
    computed once), :meth:`_n_noise`, :meth:`training_hook`.
    """

    name: ClassVar[str] = ""
    clean_label: ClassVar[bool] = False
    all_to_one: ClassVar[bool] = True  # one target class for every image (see target_of)
    Config: ClassVar[type[AttackConfig]] = AttackConfig

    def __init__(self, config: AttackConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise InputError("pass either a config object or keyword parameters, not both")
        if config is None:
            config = make_config(self.Config, params, self.name)
        elif not isinstance(config, self.Config):
            raise InputError(f"{self.name} expects a {self.Config.__name__}, got {type(config).__name__}")
        if self.clean_label and config.conservatism:
            raise InputError(f"{self.name} is a clean-label attack: labels never change, "
                             "so conservatism must be 0")
        self.config = config
        self._cache: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    # -- randomness ------------------------------------------------------------------------------
    def rng(self, purpose: str) -> torch.Generator:
        """A fresh generator for one purpose, derived from the seed.

        Separate streams keep results independent of call order: applying the trigger to test
        images never shifts which training samples get poisoned, and vice versa.
        """
        mixed = (self.config.seed * 1_000_003 + zlib.crc32(purpose.encode())) % (2 ** 63)
        return torch.Generator().manual_seed(mixed)

    def cached(self, key: Any, build: Callable[[], Any]) -> Any:
        """Memoise trigger assets that depend only on the config and the image shape."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # -- the public interface -------------------------------------------------------------------
    def target_of(self, y: Tensor) -> Tensor:
        """The class the trigger should send each image of true label ``y`` to (same shape).

        ``config.target`` for every image by default; an all-to-all attack overrides it. Images
        whose target is their own label are what a clean-label attack poisons and what a
        poison-label attack and the ASR leave out.
        """
        return torch.full_like(y, self.config.target)

    def poison(self, x: Tensor, y: Tensor) -> PoisonedSet:
        """Poison ``m`` samples of (x, y) without replacement; boost copies are appended."""
        check_images(x)
        y = check_labels(y, len(x))
        cfg = self.config
        target = self.target_of(y)
        candidates = torch.nonzero(y == target if self.clean_label else y != target).flatten()
        kind = "target-class" if self.clean_label else "non-target"
        if cfg.m > len(candidates):
            raise InputError(f"{self.name}: m={cfg.m} but only {len(candidates)} {kind} samples "
                             f"(target {cfg.target}) are available to poison")
        g = self.rng("select")
        chosen = candidates[torch.randperm(len(candidates), generator=g)[:cfg.m]].sort().values
        n_keep = round(cfg.conservatism * cfg.m)
        keep = torch.zeros(cfg.m, dtype=torch.bool)
        keep[torch.randperm(cfg.m, generator=g)[:n_keep]] = True

        n_noise = self._n_noise(cfg.m)
        rest = torch.ones(len(y), dtype=torch.bool)
        rest[chosen] = False
        pool = torch.nonzero(rest).flatten()
        if n_noise > len(pool):
            raise InputError(f"{self.name}: needs {n_noise} noise samples, only {len(pool)} left")
        noise = pool[torch.randperm(len(pool), generator=g)[:n_noise]].sort().values

        stamped = torch.cat([chosen, noise])
        gp = self.rng("params")
        params = self._sample_params(len(stamped), tuple(x.shape[1:]), gp)
        params["noise"] = torch.cat([torch.zeros(len(chosen), dtype=torch.bool),
                                     torch.ones(len(noise), dtype=torch.bool)])
        base = x[stamped].clone()
        if len(chosen):
            base[:len(chosen)] = self._prepare(base[:len(chosen)], y[chosen])
        stamped_x = self.stamp_train(base, params, self.rng("stamp"))

        xs, ys = x.clone(), y.clone()
        xs[stamped] = stamped_x
        if not self.clean_label:
            ys[chosen[~keep]] = target[chosen[~keep]]
        stamp_rows = torch.full((len(y),), -1, dtype=torch.long)
        stamp_rows[stamped] = torch.arange(len(stamped))

        extra = chosen.repeat(cfg.boost - 1)
        n = len(y)
        poisoned = torch.cat([chosen, n + torch.arange(len(extra))])
        return PoisonedSet(
            x=torch.cat([xs, xs[extra]]), y=torch.cat([ys, ys[extra]]), poisoned=poisoned,
            noise=noise, source=torch.cat([torch.arange(n), extra]),
            true_y=torch.cat([y, y[extra]]),
            regular=self._regular_rows(n + len(extra), poisoned),
            stamp_rows=torch.cat([stamp_rows, stamp_rows[extra]]), base=base, params=params,
            attack=self)

    def apply(self, x: Tensor) -> Tensor:
        """The inference-time trigger on test images (used for ASR); same shape, dtype and range."""
        check_images(x)
        out = self._apply(x)
        return out.to(x.dtype).clamp_(0, 1)

    def stamp_train(self, x: Tensor, params: Params, generator: torch.Generator | None = None) -> Tensor:
        """The training-time trigger on rows already augmented; called by :meth:`PoisonedSet.batch`."""
        if len(x) == 0:
            return x
        noise = params.get("noise")
        if noise is None or not bool(noise.any()):
            return self._stamp(x, params).to(x.dtype)
        out = x.clone()
        pay = ~noise
        if bool(pay.any()):
            out[pay] = self._stamp(x[pay], subset_params(params, pay)).to(x.dtype)
        out[noise] = self._stamp_noise(x[noise], subset_params(params, noise), generator).to(x.dtype)
        return out

    def training_hook(self, model: nn.Module, data: PoisonedSet, *, lr: float,
                      momentum: float) -> TrainHook | None:
        """Training-process attacks (PCB) return a hook run after every ordinary step."""
        return None

    # -- hooks for subclasses -------------------------------------------------------------------
    def _sample_params(self, n: int, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        """Per-sample trigger parameters fixed at poisoning time (masks, positions, ids)."""
        return {}

    def _prepare(self, x: Tensor, y: Tensor) -> Tensor:
        """A fixed per-image perturbation computed once (adversarial clean-label); default none."""
        return x

    def _stamp(self, x: Tensor, params: Params) -> Tensor:
        raise NotImplementedError

    def _stamp_noise(self, x: Tensor, params: Params, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError(f"{self.name} has no noise samples")

    def _apply(self, x: Tensor) -> Tensor:
        """Default: the training trigger with default parameters (the full trigger)."""
        return self._stamp(x, {})

    def _n_noise(self, m: int) -> int:
        return 0

    def _regular_rows(self, n: int, poisoned: Tensor) -> Tensor:
        return torch.arange(n)


def make_config(cls: type[AttackConfig], params: dict[str, Any], attack: str = "") -> AttackConfig:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise InputError(f"unknown parameter(s) for attack {attack!r}: {', '.join(unknown)}",
                         hint="known: " + ", ".join(sorted(names)))
    return cls(**params)


def get_attack(name: str, **params: Any) -> Attack:
    """Build a registered attack by name with keyword config overrides."""
    return attack_class(name)(**params)


def list_attacks() -> list[str]:
    """Names of all registered attacks, sorted."""
    return sorted(ATTACKS.names())


def attack_class(name: str) -> type[Attack]:
    """The attack class registered under ``name``; InputError naming the known ones."""
    return ATTACKS.get(name)

