"""Repair benchmark (``scan eval bench-repair``): Pivotal Tuning configs on backdoored ONNX
models, side by side in one run.

    scan eval bench-repair --models '.cache/zoo/*/*_badnets_s10[012].onnx' \\
        --config '{}' --config '{"unlearn": 1.0}' --jobs 2 --threads 1

Each model needs its recipe sidecar (``.json`` beside it, as ``scan attack`` writes) to know the
attack and target. Trusted data are drawn exactly as ``bench-detect`` draws them (``--trusted
N`` stratified CIFAR-10 test images, seed ``--seed``, 20 % held out for the Delta rule), so a
config measured here is the repair a scan would run: ``{}`` is ``scan repair``'s default (the
focused repair), ``{"focus": 0.0, "distill": 1.0}`` the calibration repair inside a CTI or ratio
scan. ``--trusted DIR`` uses a folder instead (the shipped 500-image sample was how the first
repair figures were made). A config's ``"holdout"`` key is not a PivotalConfig field: it sets
the held-out share of the trusted data (the policy's ``gate.holdout``, 0.2 unless given), so
split sizes compare side by side too. The real trigger's ASR and the clean accuracy are measured
on 2 000 further test images the repair never sees. The loops run in the scan's precision and
weight layout (``--precision``, ``--nchw``). The target counted by the summary is issue 4's
(:mod:`scanner.lab.repair_summary`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from scanner.errors import InputError


def bench_key(model: str, config: str, trusted: str, steps: int | None, seed: int,
              precision: str, nchw: bool, trajectory: int, held_views: bool) -> str:
    """A repair row's resume key: the model file, the config, and every setting of the run."""
    return (f"bench-repair|{model}|{config}|{trusted}|{steps}|{seed}|{precision}"
            f"|{'nchw' if nchw else 'auto-layout'}|{trajectory}|{held_views}")


def repair_one(path: str, config: str, trusted: str, steps: int | None, seed: int,
               threads: int, precision: str, nchw: bool, trajectory: int,
               held_views: bool = False) -> dict:
    """One model under one config: the row ``--out`` records (runs in a worker with ``--jobs``)."""
    from scanner.attacks import get_attack
    from scanner.budget import get_budget
    from scanner.classifier import SplitClassifier, predict
    from scanner.defenses.registry import get_defense, make_config
    from scanner.io.data import TrustedData, load_trusted
    from scanner.io.loader import load_model
    from scanner.io.trusted_split import TrustedSplit
    from scanner.lab.data import benchmark_draw
    from scanner.ops.metrics import accuracy, attack_success_rate
    from scanner.ops.precision import Compute, resolve_precision, to_fast_layout

    torch.set_num_threads(threads)
    device = torch.device("cpu")
    rec = json.loads(Path(path).with_suffix(".json").read_text())["recipe"]
    loaded = load_model(path)
    model = SplitClassifier.from_loaded(loaded).eval()
    if trusted.isdigit():
        xt, yt, xe, ye = benchmark_draw(int(trusted), seed)
        data = TrustedData(xt, yt)
    else:
        from scanner.attacks.train import load_subset

        data = load_trusted(trusted, loaded.spec, loaded.num_classes)
        _, _, xe, ye = load_subset(10, 2000)
    resolved = resolve_precision(precision, device)
    fast_layout = not nchw and to_fast_layout(model, data.x[:8])
    holdout, over = parse_config(config)
    tune, held = data.split(holdout, seed=seed)
    attack = get_attack(rec["attack"], m=max(1, rec["m"]), target=rec["target"], seed=rec["seed"])
    xa = attack.apply(xe)

    budget = get_budget("cpu", "standard")
    over = {"steps": steps or budget.repair_steps, "batch_size": budget.repair_batch,
            "seed": seed, **({"eval_every": trajectory} if trajectory else {}), **over}
    cfg = make_config("pivotal", device, **over)
    xv, yv = (fixed_views(held.x), held.y.repeat(8)) if held_views else (None, None)

    def measure(m) -> dict:
        return {"asr": attack_success_rate(predict(m, xa), ye, rec["target"]),
                "cda_test": accuracy(predict(m, xe), ye),
                **({"held_views": accuracy(predict(m, xv), yv)} if held_views else {})}

    t = time.perf_counter()
    with Compute(device, resolved).loops():
        res = get_defense("pivotal").run(model, TrustedSplit(tune, held), cfg,
                                         device=device, monitor=measure if trajectory else None)
    wall = time.perf_counter() - t
    before, after = measure(model), measure(res.model)
    return {"key": bench_key(Path(path).name, config, trusted, steps, seed, precision, nchw,
                             trajectory, held_views),
            "model": Path(path).name, "config": config, "target": rec["target"],
            "asr_before": before["asr"], "cda_before": before["cda_test"],
            "asr_after": after["asr"], "cda_after": after["cda_test"],
            "cda_drop": before["cda_test"] - after["cda_test"], "kept_step": res.best_step,
            "held_drop": res.cda_drop,
            "held_drop_se": None if math.isnan(res.cda_drop_se) else res.cda_drop_se,
            "holdout": holdout, "held_images": len(held), "moved": res.moved, "wall_s": wall,
            "precision": resolved, "channels_last": fast_layout, "steps": cfg.steps,
            "focus_class": res.info.get("focus_class"),
            "trajectory": [{"step": c.step, "held": c.cda, **c.extra} for c in res.trajectory]}


def fixed_views(x: torch.Tensor, shift: int = 2) -> torch.Tensor:
    """Eight views of each image, stacked view by view: as is, mirrored, and shifted by
    ``shift`` pixels (reflect padding) to six fixed offsets.

    Why: whether the accuracy over several views of the same held-out images is a less noisy
    estimate of a repair's accuracy drop than the plain held-out accuracy (``--held-views``).
    """
    h, w = x.shape[-2:]
    xp = torch.nn.functional.pad(x, (shift,) * 4, mode="reflect")
    offsets = ((0, 0), (0, 2 * shift), (2 * shift, 0), (2 * shift, 2 * shift), (shift, 0),
               (0, shift))
    return torch.cat([x, x.flip(-1)] + [xp[..., i:i + h, j:j + w] for i, j in offsets])


def parse_config(config: str) -> tuple[float, dict]:
    """(held-out share, PivotalConfig overrides) of one ``--config`` JSON text.

    Why here: the held-out share is a property of the trusted-data split, not of the repair's
    config, yet it is what a side-by-side comparison of split sizes varies.
    """
    try:
        over = json.loads(config)
    except json.JSONDecodeError as exc:
        raise InputError(f"--config is not JSON: {config!r} ({exc})") from None
    if not isinstance(over, dict):
        raise InputError(f"--config must be a JSON object, got {config!r}")
    holdout = float(over.pop("holdout", 0.2))
    if not 0.0 < holdout < 1.0:
        raise InputError(f"holdout must be in (0, 1), got {holdout}")
    return holdout, over


def check_configs(configs: list[str]) -> None:
    """Every ``--config`` parses and names only PivotalConfig fields: before any work starts."""
    from scanner.defenses.registry import make_config

    for c in configs:
        make_config("pivotal", "cpu", **parse_config(c)[1])
