"""The robustness game (paper Alg. 1) over a resumable zoo.

Train (or load from the recipe cache) a poisoned model, repair it with a defense that sees ``r``
trusted images, and record the (test CDA, real-trigger ASR) pair at every checkpoint of the
repair through the defenses' ``monitor`` hook. η is the lowest ASR within the Δ budget (see
:mod:`scanner.lab.metrics`); data efficiency v_r is η at r = 1 %, 2.5 %, 5 % of the training-set
size. The ASR of the state the defense itself keeps (its held-out Δ rule, what ``scan repair``
would deploy) is recorded beside it as ``deployed_asr``.

Resume: every finished (model, defense, r, seed) is one row keyed by
:func:`scanner.lab.rows.row_key`; a rerun skips finished rows and does not even build a model
whose rows are all done.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import torch

from scanner.errors import InputError
from scanner.io.trusted_split import TrustedSplit
from scanner.lab.data import GameData
from scanner.lab.meter import Meter
from scanner.lab.metrics import select_eta
from scanner.lab.rows import RowStore, row_key
from scanner.lab.zoo import Builder, Log, ZooSpec, make_recipe, quiet, recipe_identity


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

    device = device or next(model.parameters()).device
    if cfg is None:
        cfg = make_config(defense, device, **{"max_cda_drop": delta, "seed": seed,
                                              **(overrides or {})})
    split = TrustedSplit(*trusted.split(holdout, seed=seed))
    t0 = time.perf_counter()
    res = get_defense(defense).run(model, split, cfg, device=device, monitor=meter,
                                   progress=progress)
    traj = [{"step": c.step, "held_cda": c.cda, "test_cda": c.extra.get("test_cda"),
             "asr": c.extra.get("asr")} for c in res.trajectory]
    eta = select_eta(traj, delta)
    final = meter(res.model)
    pivot = traj[0]
    return {"defense": defense, "delta": delta, "n_tune": len(split.tune),
            "n_held": len(split.held), "pivot_cda": pivot["test_cda"], "pivot_asr": pivot["asr"],
            "eta": eta["eta"], "eta_step": eta["step"], "eta_cda": eta["cda"],
            "deployed_step": res.best_step, "deployed_cda": final["test_cda"],
            "deployed_asr": final.get("asr"), "moved": res.moved,
            "param_distance": res.param_distance, "trajectory": traj, "notes": list(res.notes),
            "defense_cfg": config_fields(cfg), "wall_s": time.perf_counter() - t0}


def config_fields(cfg) -> dict:
    """A defense config's scalar fields, for the row (nested tables left out)."""
    try:
        return {k: v for k, v in dataclasses.asdict(cfg).items() if not isinstance(v, dict)}
    except TypeError:
        return {}


def run_robustness(store: RowStore, builder: Builder, data: GameData, *,
                   attacks: Sequence[tuple[str, int]], defenses: Sequence[str],
                   rs: Sequence[float], seeds: Sequence[int], spec: ZooSpec,
                   delta: float = 0.02, holdout: float = 0.2, overrides: dict | None = None,
                   device: torch.device | None = None, log: Log = quiet) -> dict:
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
                store.append({"key": row_key("robustness", recipe.key(), d, r, seed),
                              "game": "robustness", **recipe_identity(recipe, spec), "r": r,
                              "n_trusted": len(trusted), **out, "time": time.time()})
                counts["ran"] += 1
                log(f"[{recipe.name}] {d} r={r:g}: CDA {out['pivot_cda']:.3f} ASR "
                    f"{out['pivot_asr']:.3f} -> eta {out['eta']:.3f} (deployed ASR "
                    f"{out['deployed_asr']:.3f}, CDA {out['deployed_cda']:.3f}) "
                    f"{out['wall_s']:.0f}s")
    return counts
