"""``scan selftest``: the gate, on real data, must pass a clean model and fail a backdoored one.

Uses the models and CIFAR-10 sample shipped in ``fixtures/`` (built by ``python -m fixtures.recipes
shipped``), scanned with the default policy exactly as a user's CI would scan them. A clean pass
counts only with its canary detected, so the selftest also proves the scan's sensitivity.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from scanner.errors import InputError
from scanner.scan.progress import phase
from scanner.scan.results import VERDICT_BACKDOOR, VERDICT_INCONCLUSIVE, VERDICT_PASS
from scanner.scan.verdict import exit_code

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@dataclass(frozen=True)
class SelftestCase:
    model: Path
    trusted: Path
    expected: str  # "pass" | "backdoor"
    arch: str | None = None  # for safetensors cases


def default_cases(root: Path = FIXTURES) -> list[SelftestCase]:
    data = root / "cifar10_sample"
    cases = [SelftestCase(root / "models" / "resnet8_clean.onnx", data, "pass"),
             SelftestCase(root / "models" / "resnet8_badnets.onnx", data, "backdoor")]
    missing = [str(p) for c in cases for p in (c.model, c.trusted) if not p.exists()]
    if missing:
        raise InputError("selftest fixtures not found: " + ", ".join(missing),
                         hint="run from a checkout of the project (fixtures/ is not part of a "
                              "wheel), or rebuild them: python -m fixtures.recipes shipped")
    return cases


def run_selftest(cases: list[SelftestCase] | None = None, *, budget: str = "standard",
                 seed: int = 0, device: torch.device | None = None, precision: str = "auto",
                 progress=None,
                 log: Callable[[str], None] | None = None, policy=None) -> dict:
    """Scan every case with the default policy; ``ok`` only if every verdict is the expected one.

    ``exit_code``: 0 all right; 1 a definite wrong verdict (the gate would ship a backdoor or
    block a clean model); 3 a scan was inconclusive (the gate cannot be shown to work here).
    """
    from scanner.policy import Policy
    from scanner.scan.detect_job import detect
    from scanner.scan.request import build_request

    cases = cases if cases is not None else default_cases()
    out = []
    for case in cases:
        if log:
            log(f"selftest: scanning {case.model.name} (expect {case.expected})")
        t = time.perf_counter()
        request = build_request(policy or Policy(), device=device or "cpu", seed=seed,
                                budget_level=budget, arch=case.arch, precision=precision)
        res = detect(case.model, case.trusted, request,
                     progress=phase(progress, case.model.stem))
        out.append({"model": str(case.model), "expected": case.expected, "verdict": res.verdict,
                    "ok": res.verdict == case.expected, "reasons": res.reasons,
                    "model_score": (res.detection or {}).get("model_score"),
                    "canary": res.canary, "wall_s": time.perf_counter() - t})
    ok = all(c["ok"] for c in out)
    wrong = any(not c["ok"] and c["verdict"] != VERDICT_INCONCLUSIVE for c in out)
    # the selftest's own verdict: a wrong verdict is the gate failing, as a backdoor fails it
    code = exit_code(VERDICT_PASS if ok else VERDICT_BACKDOOR if wrong else VERDICT_INCONCLUSIVE)
    return {"ok": ok, "exit_code": code, "budget": budget, "seed": seed,
            "precision": precision, "cases": out}
