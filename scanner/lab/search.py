"""Defense hyper-parameter search by self-poisoning (paper §5.3, App. A.5).

The defender poisons its own copy of the model with a known patch backdoor, using only its
trusted data (``scanner.scan.implant_canary``: a BadNets-style poison-label checkerboard patch,
fine-tuned in), then grid-searches a defense's knobs and keeps the setting with the highest
effectiveness: the lowest remaining ASR η of the known trigger while the clean accuracy stays
within Δ (ties: lower ASR of the state the defense itself keeps, then higher clean accuracy,
then grid order).

The trusted data is split three ways (stratified, seeded): an evaluation part that only
measures (clean accuracy and the canary's ASR at every checkpoint), and of the rest a tuning part
(implant and repair train on it) and a held-out part (the defense's own Δ rule, as in
``scan repair``). :mod:`scanner.lab.search_policy` writes the result as a policy TOML.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from scanner.errors import InconclusiveError
from scanner.lab.meter import Meter
from scanner.lab.robustness import robustness_game

# Small grids around Table 5 and the CPU defaults (lr None = per-model choice, BN or folded).
DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "pivotal": {"lr": [3e-4, 1e-3, 3e-3], "lambda_p": [2_000.0, 20_000.0]},
    "weight_decay": {"lr": [3e-4, 1e-3, 3e-3], "weight_decay": [1e-3, 1e-2]},
    "fine_pruning": {"lr": [3e-4, 1e-3, 3e-3], "prune_rate": [0.8, 0.96]},
    "nad": {"lr": [3e-4, 1e-3, 3e-3], "lambda_at": [100.0, 1000.0]},
    "nc_repair": {"lr": [3e-4, 1e-3, 3e-3], "stamp_frac": [0.25, 0.5]},
}


@dataclass
class SearchResult:
    defense: str
    grid: dict[str, list]
    trials: list[dict]
    best: dict
    canary: dict
    delta: float
    n_trusted: dict
    base_overrides: dict = field(default_factory=dict)
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"defense": self.defense, "grid": self.grid, "best": self.best,
                "canary": self.canary, "delta": self.delta, "n_trusted": self.n_trusted,
                "base_overrides": self.base_overrides, "wall_s": self.wall_s,
                "notes": self.notes, "trials": self.trials}


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in grid order."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def format_params(p: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items())


def self_poison_search(model, trusted, num_classes: int, defense: str = "pivotal",
                       grid: dict[str, list] | None = None, *, delta: float = 0.02,
                       base_overrides: dict | None = None, eval_frac: float = 0.2,
                       holdout: float = 0.2, canary_steps: int | None = None, seed: int = 0,
                       canary_config=None,
                       device: torch.device | None = None,
                       log: Callable[[str], None] = lambda s: None) -> SearchResult:
    """Implant a known backdoor with the trusted data, then grid-search ``defense`` by η.

    ``canary_config`` overrides the implant (default: the gate's canary settings).
    """
    from scanner.defenses.registry import check_tunable, get_defense, make_config
    from scanner.scan import (CanaryConfig, TrustedSplit, canary_patch, implant_canary,
                              stamp_canary)

    t0 = time.perf_counter()
    get_defense(defense)
    grid = dict(grid) if grid else dict(DEFAULT_GRIDS.get(defense, {"lr": [3e-4, 1e-3, 3e-3]}))
    base = dict(base_overrides or {})
    points = grid_points(grid)
    device = device or next(model.parameters()).device
    check_tunable([*base, *grid], "search grid")
    for p in points:  # unknown knob names fail now, not after the implant
        make_config(defense, device, **{**base, **p})

    work, evalset = trusted.split(eval_frac, seed=seed)
    tune, held = work.split(holdout, seed=seed)
    ccfg = canary_config or CanaryConfig(seed=seed, **({"steps": canary_steps} if canary_steps
                                                        else {}))
    log(f"implanting the self-poisoning backdoor with {len(tune)} trusted images")
    implant = implant_canary(model, TrustedSplit(tune, held), num_classes, ccfg,
                             device=device)
    patch, _ = canary_patch(tuple(tune.x.shape[1:]), ccfg.patch_frac, ccfg.seed)
    meter = Meter(evalset.x, evalset.y, trigger=lambda x: stamp_canary(x, patch),
                  target=implant.target)
    before = meter(implant.model)
    canary = {"target": implant.target, "asr": before["asr"], "cda": before["test_cda"],
              "original_cda": meter(model)["test_cda"], "steps": implant.steps, "ok": implant.ok,
              "notes": implant.notes}
    if before["asr"] < 0.5:
        raise InconclusiveError(
            f"the self-poisoning implant did not take (ASR {before['asr']:.2f} on the evaluation "
            "images): the search cannot measure a repair", hint="raise --canary-steps")
    log(f"implant: target {implant.target}, ASR {before['asr']:.3f}, CDA {before['test_cda']:.3f}")
    notes = []
    cost = canary["original_cda"] - before["test_cda"]
    if cost > 2 * delta:
        notes.append(f"the implant cost {cost:.2f} of clean accuracy: the Delta budget is counted "
                     "from the damaged copy, which favours knobs that merely recover accuracy; "
                     "treat the choice with care (more trusted data or --canary-steps may help)")
        log("warning: " + notes[-1])
    # the repair's own held-out rule sees work (tune + held): same split as the implant used
    trials = []
    for i, p in enumerate(points):
        out = robustness_game(implant.model, work, meter, defense, delta=delta, holdout=holdout,
                              seed=seed, overrides={**base, **p}, device=device)
        trials.append({"params": p, "eta": out["eta"], "eta_step": out["eta_step"],
                       "eta_cda": out["eta_cda"], "deployed_asr": out["deployed_asr"],
                       "deployed_cda": out["deployed_cda"], "deployed_step": out["deployed_step"],
                       "moved": out["moved"], "wall_s": out["wall_s"], "order": i,
                       "trajectory": out["trajectory"]})
        log(f"[{i + 1}/{len(points)}] {format_params(p)}: eta {out['eta']:.3f} "
            f"(deployed ASR {out['deployed_asr']:.3f}, CDA {out['deployed_cda']:.3f}) "
            f"{out['wall_s']:.0f}s")
    best = min(trials, key=lambda t: (nan_last(t["eta"]), nan_last(t["deployed_asr"]),
                                      -(t["deployed_cda"] or 0.0), t["order"]))
    n = {"tune": len(tune), "held": len(held), "eval": len(evalset)}
    return SearchResult(defense, grid, trials, best, canary, delta, n, base,
                        time.perf_counter() - t0, notes)


def nan_last(v) -> float:
    """A sort key that puts None and NaN after every number."""
    return float("inf") if v is None or v != v else float(v)
