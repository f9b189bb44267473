"""The detectability game (paper Alg. 2) over a resumable zoo.

Clean and poisoned models from the same recipe with different seeds (poisoned: ``seed_base +
i``, clean: ``seed_base + 10 000 + i``) are scored by a detector exactly as a scan runs it
(``scanner.scan.run_detection``); the ROC AUC per (attack, m) is computed at table time from
the per-model score rows (:mod:`scanner.lab.tables`).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch

from scanner.errors import InputError
from scanner.lab.data import GameData
from scanner.lab.meter import Meter
from scanner.lab.rows import RowStore, row_key
from scanner.lab.zoo import Builder, Log, ZooSpec, make_recipe, quiet, recipe_identity

DETECTORS = ("mask", "nc", "cti", "ratio")
CLEAN_SEED_OFFSET = 10_000  # clean models never share a seed with poisoned ones
DetectFn = Callable[..., dict]


def check_detectors(names: Sequence[str]) -> None:
    """Refuse an unknown detector name before any model is built."""
    for d in names:
        if d not in DETECTORS:
            raise InputError(f"unknown detector {d!r}", hint="known: " + ", ".join(DETECTORS))


def detection_score(model: torch.nn.Module, trusted, num_classes: int, detector: str, *,
                    budget=None, holdout: float = 0.2, seed: int = 0,
                    device: torch.device | None = None, progress=None) -> dict:
    """Alg. 2 line 8: the detector's model score (higher = more suspicious) with ``trusted`` data.

    ``budget`` (a :class:`scanner.budget.Budget`) defaults to the device's ``fast`` level.
    """
    from scanner.io.trusted_split import TrustedSplit
    from scanner.scan import build_request, run_detection

    check_detectors([detector])
    device = device or next(model.parameters()).device
    request = build_request(device=device, seed=seed, method=detector, budget_level="fast",
                            budget_overrides=None if budget is None else budget.to_dict())
    split = TrustedSplit(*trusted.split(holdout, seed=seed))
    t0 = time.perf_counter()
    det, _rep = run_detection(model, split, num_classes, request, progress)
    score = float(det.model_score)
    return {"score": None if math.isnan(score) else score, "flagged": list(det.flagged),
            "top_class": det.top_class, "wall_s": time.perf_counter() - t0}


def run_detectability(store: RowStore, builder: Builder, data: GameData, *,
                      attacks: Sequence[tuple[str, int]], detectors: Sequence[str],
                      repeats: int, spec: ZooSpec, r: float = 500, seed_base: int = 0,
                      budget=None, holdout: float = 0.2, device: torch.device | None = None,
                      detect_fn: DetectFn | None = None, log: Log = quiet) -> dict:
    """Play Alg. 2: ``repeats`` clean models and ``repeats`` poisoned models per (attack, m).

    One row per (model, detector): its score, CDA and (poisoned) ASR. Clean models are shared by
    every (attack, m) of the same ``spec``. ``detect_fn(model, trusted, num_classes, detector,
    seed=..., budget=..., device=...)`` defaults to :func:`detection_score`.
    """
    if repeats < 1:
        raise InputError(f"--repeats must be at least 1, got {repeats}")
    check_detectors(detectors)
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
        measured = Meter(data.x_test, data.y_test, built.attack)(built.model)
        trusted = data.trusted(r, recipe.seed)
        asr = measured.get("asr")
        for d in todo:
            out = detect_fn(built.model, trusted, data.num_classes, d, seed=recipe.seed,
                            budget=budget, holdout=holdout, device=device)
            store.append({"key": row_key("detectability", recipe.key(), d, r, recipe.seed),
                          "game": "detectability", **recipe_identity(recipe, spec),
                          "label": int(bool(recipe.attack)), "detector": d, "r": r,
                          "n_trusted": len(trusted), "cda": measured["test_cda"], "asr": asr,
                          **out, "time": time.time()})
            counts["ran"] += 1
            log(f"[{recipe.name}] {d}: score {out['score']} (CDA {measured['test_cda']:.3f}"
                + (f", ASR {asr:.3f})" if asr is not None else ")"))
    return counts
