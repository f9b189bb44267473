"""The paper's two security games (§3) played over a resumable zoo of recipe-built models.

Robustness game (Alg. 1): train (or load from the recipe cache) a poisoned model, repair it with a
defense that sees ``r`` trusted images, and record the (test CDA, real-trigger ASR) pair at every
checkpoint of the repair through the defenses' ``monitor`` hook. η is the lowest ASR within the
Δ budget (see :mod:`scanner.eval.metrics`); data efficiency v_r is η at r = 1 %, 2.5 %, 5 % of the
training-set size. The ASR of the state the defense itself keeps (its held-out Δ rule, what
``scan repair`` would deploy) is recorded beside it as ``deployed_asr``.

Detectability game (Alg. 2): clean and poisoned models from the same recipe with different seeds
(poisoned: ``seed_base + i``, clean: ``seed_base + 10 000 + i``) are scored by a detector
(``mask``, ``nc`` or ``cti``, exactly as ``scanner.pipeline.run_detection`` runs them); the ROC
AUC per (attack, m) is computed at table time from the per-model score rows.

Data (CIFAR-10 via ``scanner.attacks.bench.load_subset``): the first ``train_size`` training
images train the models (the recipe cache's data); trusted images are drawn, class-balanced and
nested (the 1 % set is inside the 2.5 % set), from the training images *after* those, which no
model saw; CDA and ASR are measured on a class-stratified slice of the test split.

Resume: every finished (model, defense or detector, r, seed) is one JSON line in the results file,
keyed by ``row_key``; a rerun skips finished rows and does not even build a model whose rows are
all done.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from scanner.errors import InputError
from scanner.eval.metrics import select_eta

Log = Callable[[str], None]
CLEAN_SEED_OFFSET = 10_000  # clean models of the detectability game never share a seed with poisoned ones


def _quiet(_msg: str) -> None:
    return None


# --------------------------------------------------------------------------- results store


def row_key(game: str, recipe_key: str, method: str, r: float, seed: int) -> str:
    """The resume key: (game, recipe key, defense or detector, r, seed)."""
    return f"{game}|{recipe_key}|{method}|{r:g}|{seed}"


class ResultStore:
    """Append-only JSONL results file; each row carries its ``key`` (see :func:`row_key`).

    Lines that do not parse (a run killed mid-write) are ignored and reported in ``skipped``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict] = []
        self.skipped = 0
        if self.path.is_dir():
            raise InputError(f"results file {self.path} is a directory")
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    self.skipped += 1
                    continue
                if isinstance(row, dict):
                    self.rows.append(row)
        self._keys = {r.get("key") for r in self.rows}

    def done(self, key: str) -> bool:
        return key in self._keys

    def append(self, row: dict) -> None:
        if "key" not in row:
            raise ValueError("result rows need a 'key'")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(_jsonable(row), allow_nan=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows.append(row)
        self._keys.add(row["key"])


def load_rows(path: str | Path) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"results file not found: {p}",
                         hint="run `scan eval robustness` or `scan eval detectability` first")
    return ResultStore(p).rows


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    return v


# --------------------------------------------------------------------------- data


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

    def trusted(self, r: float, seed: int = 0):
        """A class-balanced draw of ``n_trusted(r)`` pool images; nested in ``r`` for a seed."""
        from scanner.io.data import TrustedData

        n = self.n_trusted(r)
        order = balanced_order(self.y_pool, seed)[:n]
        order = np.sort(order)
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
    from scanner.attacks.bench import load_subset

    x, y, xt, yt = load_subset(train_size + pool_size, test_size)
    return GameData(x[:train_size], y[:train_size], x[train_size:], y[train_size:], xt, yt)


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ZooSpec:
    """How every model of a zoo is trained (everything of a recipe but attack, m and seed)."""

    arch: str = "resnet8"
    train_size: int = 20_000
    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 128
    target: int = 0
    normalize_in_graph: bool = False
    dataset: str = "cifar10"

    @property
    def setting(self) -> str:
        return f"{self.arch}/n{self.train_size}/e{self.epochs}"


def make_recipe(spec: ZooSpec, attack: str | None, m: int, seed: int, params: dict | None = None):
    from scanner.attacks.recipe import ModelRecipe

    name = f"{spec.arch}_{attack or 'clean'}" + (f"_m{m}" if attack else "") + f"_s{seed}"
    return ModelRecipe(name=name, arch=spec.arch, attack=attack, attack_params=dict(params or {}),
                       m=m if attack else 0, target=spec.target, train_size=spec.train_size,
                       epochs=spec.epochs, lr=spec.lr, batch_size=spec.batch_size, seed=seed,
                       normalize_in_graph=spec.normalize_in_graph, dataset=spec.dataset)


def recipe_attack(recipe):
    """The recipe's attack with its exact trigger (seeded triggers depend on the recipe seed)."""
    if not recipe.attack:
        return None
    from scanner.attacks import get_attack

    return get_attack(recipe.attack, m=recipe.m, target=recipe.target, seed=recipe.seed,
                      **recipe.attack_params)


@dataclass
class Built:
    """A trained model as the games see it: a SplitClassifier on [0,1] images, and its attack."""

    model: torch.nn.Module
    attack: object | None
    info: dict = field(default_factory=dict)


Builder = Callable[[object], Built]


class RecipeBuilder:
    """Train (or load from the recipe-hash cache) a model and import it as a user's ONNX file.

    The model goes through the product's own export and import (BN folded), so a game measures
    the defenses on the same kind of model ``scan`` receives.
    """

    def __init__(self, cache_dir: str | Path, data: GameData, *, device: str = "cpu",
                 log: Log = _quiet) -> None:
        self.cache_dir, self.data, self.device, self.log = Path(cache_dir), data, device, log
        self.calls = 0

    def __call__(self, recipe) -> Built:
        from scanner.attacks.recipe import cached_model
        from scanner.classifier import SplitClassifier
        from scanner.io.loader import load_model

        self.calls += 1
        d = self.data
        if recipe.train_size > len(d.y_train):
            raise InputError(f"recipe {recipe.name} trains on {recipe.train_size} images but only "
                             f"{len(d.y_train)} were loaded")
        path = self.find_cached(recipe) or cached_model(
            recipe, self.cache_dir, device=self.device,
            data=(d.x_train, d.y_train, d.x_test, d.y_test), log=self.log)
        loaded = load_model(path)
        model = SplitClassifier.from_loaded(loaded).eval()
        return Built(model, recipe_attack(recipe), {"path": str(path)})


# --------------------------------------------------------------------------- measurements


    def find_cached(self, recipe) -> Path | None:
        """Any model in the recipe's cache folder whose sidecar has the same recipe key.

        ``cached_model`` looks for ``<key>/<name>.onnx``; the name is a label outside the key,
        so a zoo built under other names (``python -m fixtures.recipes zoo``) is reused here.
        """
        d = self.cache_dir / recipe.key()
        for p in sorted(d.glob("*.onnx")) if d.is_dir() else []:
            side = p.with_suffix(".json")
            try:
                if json.loads(side.read_text()).get("recipe_key") == recipe.key():
                    return p
            except (OSError, ValueError):
                continue
        return None


class Meter:
    """Test CDA and real-trigger ASR of a model; triggered images are made once."""

    def __init__(self, x_test: torch.Tensor, y_test: torch.Tensor, attack=None,
                 trigger: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 target: int | None = None) -> None:
        self.x, self.y = x_test, y_test
        self.x_trig = None
        if attack is not None:
            trigger = attack.apply
            target = attack.config.target
        if trigger is not None:
            keep = y_test != target
            if not bool(keep.any()):
                raise InputError("every test image is of the target class: ASR is undefined")
            xs = x_test[keep]
            self.x_trig = torch.cat([trigger(b) for b in xs.split(512)])
            self.target = int(target)

    def __call__(self, model: torch.nn.Module) -> dict:
        from scanner.classifier import predict
        from scanner.ops.metrics import accuracy

        out = {"test_cda": accuracy(predict(model, self.x), self.y)}
        if self.x_trig is not None:
            out["asr"] = float((predict(model, self.x_trig) == self.target).float().mean())
        return out


def robustness_game(model: torch.nn.Module, trusted, meter: Meter, defense: str, *,
                    delta: float = 0.02, holdout: float = 0.2, seed: int = 0, cfg=None,
                    overrides: dict | None = None, device: torch.device | None = None,
                    progress=None) -> dict:
    """One round of Alg. 1 lines 11-17: repair ``model`` with ``trusted`` data, measure it.

    ``trusted`` (a TrustedData) is split ``holdout`` for the defense's own Δ rule; the defense
    runs with ``max_cda_drop = delta``. Returns the row fields: the trajectory (step, held-out
    CDA, test CDA, ASR), η (lowest ASR within Δ on the *test* CDA), and the deployed state's
    numbers.
    """
    from scanner.defenses.registry import get_defense, make_config

    run = get_defense(defense).run
    device = device or next(model.parameters()).device
    if cfg is None:
        cfg = make_config(defense, device, **{"max_cda_drop": delta, "seed": seed,
                                              **(overrides or {})})
    tune, held = trusted.split(holdout, seed=seed)
    t0 = time.perf_counter()
    res = run(model, tune.x, tune.y, held.x, held.y, cfg, device=device, monitor=meter,
              progress=progress)
    traj = [{"step": c.step, "held_cda": c.cda, "test_cda": c.extra.get("test_cda"),
             "asr": c.extra.get("asr")} for c in res.trajectory]
    eta = select_eta(traj, delta)
    final = meter(res.model)
    pivot = traj[0]
    return {"defense": defense, "delta": delta, "n_tune": len(tune), "n_held": len(held),
            "pivot_cda": pivot["test_cda"], "pivot_asr": pivot["asr"],
            "eta": eta["eta"], "eta_step": eta["step"], "eta_cda": eta["cda"],
            "deployed_step": res.best_step, "deployed_cda": final["test_cda"],
            "deployed_asr": final.get("asr"), "moved": res.moved,
            "param_distance": res.param_distance, "trajectory": traj, "notes": list(res.notes),
            "defense_cfg": _cfg_dict(cfg), "wall_s": time.perf_counter() - t0}


def _cfg_dict(cfg) -> dict:
    try:
        return {k: v for k, v in dataclasses.asdict(cfg).items() if not isinstance(v, dict)}
    except TypeError:
        return {}


def detection_score(model: torch.nn.Module, trusted, num_classes: int, detector: str, *,
                    budget=None, holdout: float = 0.2, seed: int = 0,
                    device: torch.device | None = None, progress=None) -> dict:
    """Alg. 2 line 8: the detector's model score (higher = more suspicious) with ``trusted`` data."""
    from scanner.budget import get_budget
    from scanner.pipeline import ScanSettings, run_detection

    if detector not in DETECTORS:
        raise InputError(f"unknown detector {detector!r}", hint="known: " + ", ".join(DETECTORS))
    device = device or next(model.parameters()).device
    budget = budget or get_budget(device.type, "fast")
    tune, held = trusted.split(holdout, seed=seed)
    t0 = time.perf_counter()
    det, _rep = run_detection(model, tune, held, num_classes, ScanSettings(method=detector, seed=seed),
                              budget, device, progress=progress)
    score = float(det.model_score)
    return {"score": None if math.isnan(score) else score, "flagged": list(det.flagged),
            "top_class": det.top_class, "wall_s": time.perf_counter() - t0}


DETECTORS = ("mask", "nc", "cti", "ratio")
DetectFn = Callable[..., dict]


# --------------------------------------------------------------------------- zoo runs


def _identity(recipe, spec: ZooSpec) -> dict:
    return {"recipe_key": recipe.key(), "recipe_name": recipe.name, "attack": recipe.attack or "clean",
            "m": recipe.m, "seed": recipe.seed, "arch": recipe.arch, "train_size": recipe.train_size,
            "epochs": recipe.epochs, "target": recipe.target, "setting": spec.setting}


def run_robustness(store: ResultStore, builder: Builder, data: GameData, *,
                   attacks: Sequence[tuple[str, int]], defenses: Sequence[str],
                   rs: Sequence[float], seeds: Sequence[int], spec: ZooSpec,
                   delta: float = 0.02, holdout: float = 0.2, overrides: dict | None = None,
                   device: torch.device | None = None, log: Log = _quiet) -> dict:
    """Play Alg. 1 for every (attack, m) × seed × defense × r; append one row per run.

    A finished row (same key in ``store``) is skipped; a model is built only when one of its rows
    is missing. Returns counts ``{"ran", "skipped", "models_built"}``.
    """
    from scanner.defenses.registry import get_defense

    for d in defenses:
        get_defense(d)  # fail on a typo before training anything
    for r in rs:
        data.n_trusted(r)
    counts = {"ran": 0, "skipped": 0, "models_built": 0}
    for attack, m in attacks:
        for seed in seeds:
            recipe = make_recipe(spec, attack, m, seed)
            todo = [(d, r) for d in defenses for r in rs
                    if not store.done(row_key("robustness", recipe.key(), d, r, seed))]
            counts["skipped"] += len(defenses) * len(rs) - len(todo)
            if not todo:
                log(f"[{recipe.name}] all {len(defenses) * len(rs)} robustness rows done; skipped")
                continue
            built = builder(recipe)
            counts["models_built"] += 1
            if built.attack is None:
                raise InputError(f"robustness needs a poisoned model; {recipe.name} has no attack")
            meter = Meter(data.x_test, data.y_test, built.attack)
            for d, r in todo:
                trusted = data.trusted(r, seed)
                log(f"[{recipe.name}] {d} with r={r:g} ({len(trusted)} trusted images)")
                out = robustness_game(built.model, trusted, meter, d, delta=delta,
                                      holdout=holdout, seed=seed,
                                      overrides=(overrides or {}).get(d), device=device)
                row = {"key": row_key("robustness", recipe.key(), d, r, seed),
                       "game": "robustness", **_identity(recipe, spec), "r": r,
                       "n_trusted": len(trusted), **out, "time": time.time()}
                store.append(row)
                counts["ran"] += 1
                log(f"[{recipe.name}] {d} r={r:g}: CDA {out['pivot_cda']:.3f} ASR "
                    f"{out['pivot_asr']:.3f} -> eta {out['eta']:.3f} (deployed ASR "
                    f"{out['deployed_asr']:.3f}, CDA {out['deployed_cda']:.3f}) "
                    f"{out['wall_s']:.0f}s")
    return counts


def run_detectability(store: ResultStore, builder: Builder, data: GameData, *,
                      attacks: Sequence[tuple[str, int]], detectors: Sequence[str],
                      repeats: int, spec: ZooSpec, r: float = 500, seed_base: int = 0,
                      budget=None, holdout: float = 0.2, device: torch.device | None = None,
                      detect_fn: DetectFn | None = None, log: Log = _quiet) -> dict:
    """Play Alg. 2: ``repeats`` clean models and ``repeats`` poisoned models per (attack, m).

    One row per (model, detector): its score, CDA and (poisoned) ASR. Clean models are shared by
    every (attack, m) of the same ``spec``. ``detect_fn(model, trusted, num_classes, detector,
    seed=..., budget=..., device=...)`` defaults to :func:`detection_score`.
    """
    if repeats < 1:
        raise InputError(f"--repeats must be at least 1, got {repeats}")
    for d in detectors:
        if d not in DETECTORS:
            raise InputError(f"unknown detector {d!r}", hint="known: " + ", ".join(DETECTORS))
    data.n_trusted(r)
    detect_fn = detect_fn or detection_score
    recipes = [make_recipe(spec, None, 0, seed_base + CLEAN_SEED_OFFSET + i) for i in range(repeats)]
    recipes += [make_recipe(spec, a, m, seed_base + i) for a, m in attacks for i in range(repeats)]
    counts = {"ran": 0, "skipped": 0, "models_built": 0}
    for recipe in recipes:
        todo = [d for d in detectors
                if not store.done(row_key("detectability", recipe.key(), d, r, recipe.seed))]
        counts["skipped"] += len(detectors) - len(todo)
        if not todo:
            log(f"[{recipe.name}] all detector rows done; skipped")
            continue
        built = builder(recipe)
        counts["models_built"] += 1
        meter = Meter(data.x_test, data.y_test, built.attack)
        measured = meter(built.model)
        trusted = data.trusted(r, recipe.seed)
        for d in todo:
            out = detect_fn(built.model, trusted, data.num_classes, d, seed=recipe.seed,
                            budget=budget, holdout=holdout, device=device)
            row = {"key": row_key("detectability", recipe.key(), d, r, recipe.seed),
                   "game": "detectability", **_identity(recipe, spec), "label": int(bool(recipe.attack)),
                   "detector": d, "r": r, "n_trusted": len(trusted), "cda": measured["test_cda"],
                   "asr": measured.get("asr"), **out, "time": time.time()}
            store.append(row)
            counts["ran"] += 1
            asr = measured.get("asr")
            log(f"[{recipe.name}] {d}: score {out['score']} (CDA {measured['test_cda']:.3f}"
                + (f", ASR {asr:.3f})" if asr is not None else ")"))
    return counts


# --------------------------------------------------------------------------- parsing helpers


def parse_list(text: str, conv=str, name: str = "list") -> list:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise InputError(f"{name}: empty list")
    out = []
    for t in items:
        try:
            out.append(conv(t))
        except ValueError:
            raise InputError(f"{name}: cannot read {t!r} as {getattr(conv, '__name__', conv)}") from None
    return out


def parse_r(text: str) -> list[float]:
    """``0.01,0.025,0.05`` (fractions of the training set) or ``500`` (image counts)."""
    rs = parse_list(text, float, "--r")
    for r in rs:
        if not r > 0 or (r >= 1 and r != int(r)):
            raise InputError(f"--r: {r:g} is neither a fraction in (0, 1) nor a whole number of images")
    return rs


def attack_grid(attacks: Iterable[str], ms: Sequence[int] | None, rate: float,
                train_size: int) -> list[tuple[str, int]]:
    """(attack, m) pairs: every attack with every m (default: ``rate`` × training-set size)."""
    from scanner.attacks import list_attacks

    known = list_attacks()
    out = []
    for a in attacks:
        key = a.lower().replace("-", "_")
        if key not in known:
            raise InputError(f"unknown attack {a!r}", hint="known: " + ", ".join(known))
        for m in (ms or [max(1, round(rate * train_size))]):
            if m < 1:
                raise InputError(f"--m must be positive, got {m}")
            out.append((key, int(m)))
    return out
