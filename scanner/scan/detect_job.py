"""``scan MODEL --trusted DATA``: one detection, confirmed by the sensitivity canary.

Never returns "pass" for a scan that did not really run (fail closed).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from scanner.scan.canary import canary_in_parallel, run_canary
from scanner.io.trusted_split import TrustedSplit
from scanner.scan.prepare import Prepared, prepare
from scanner.scan.progress import ProgressFn, phase
from scanner.scan.request import ScanRequest
from scanner.scan.results import ScanResult
from scanner.scan.verdict import judge_canary, judge_detection


def loops(request: ScanRequest):
    """The precision context of a job's optimisation loops (measurements stay float32)."""
    from scanner.ops.precision import Compute

    return Compute(request.torch_device, request.precision).loops()


def run_detection(model, split: TrustedSplit, num_classes: int, request: ScanRequest,
                  progress: ProgressFn | None = None, *, classes: list[int] | None = None,
                  reference=None) -> tuple:
    """The request's detector on ``model``: (DetectionResult, RepairResult | None).

    A detector that needs a repair gets Pivotal Tuning's calibration preset first. ``classes`` +
    ``reference``: invert only those classes, taking the others' values from ``reference`` (a
    full detection of the same kind).
    """
    from scanner.detectors.inversion import InversionConfig
    from scanner.detectors.registry import DETECTORS

    budget, device = request.budget, request.torch_device
    inv = InversionConfig(steps=budget.invert_steps, batch_size=budget.invert_batch,
                          chunk=budget.invert_chunk, seed=request.seed)
    detector = DETECTORS.get(request.method)(inv, request.threshold)
    with loops(request):
        rep = None
        if detector.needs_repair:
            rep = calibration_repair(model, split, request, progress)
        det = detector(model, split, num_classes, repaired=None if rep is None else rep.model,
                       device=device, progress=phase(progress, detector.phase), classes=classes,
                       reference=reference)
    return det, rep


def calibration_repair(model, split: TrustedSplit, request: ScanRequest, progress):
    """Pivotal Tuning as the calibrated detectors were measured with (not ``scan repair``'s)."""
    from scanner.defenses.pivotal import CALIBRATION, PivotalConfig, pivotal_tuning

    budget = request.budget
    cfg = PivotalConfig.for_device(request.torch_device, steps=budget.repair_steps,
                                   batch_size=budget.repair_batch, seed=request.seed,
                                   max_cda_drop=request.max_cda_drop, **CALIBRATION)
    return pivotal_tuning(model, split, cfg,
                          device=request.torch_device, progress=phase(progress, "pivotal tuning"))


def detect(model_path: str | Path, trusted: str | Path, request: ScanRequest | None = None, *,
           progress: ProgressFn | None = None) -> ScanResult:
    """Scan one model: detection, then (for a score below threshold) the canary."""
    request = request or ScanRequest()
    t0 = time.perf_counter()
    prep = prepare(model_path, trusted, request, progress)
    if isinstance(prep, ScanResult):
        return prep
    result = prep.result
    with contextlib.ExitStack() as stack:
        job = _start_parallel_canary(prep, request, progress, stack)
        result.run["canary_parallel"] = job is not None
        t1 = time.perf_counter()
        det, rep = run_detection(prep.model, prep.split, prep.loaded.num_classes, request,
                                 phase(progress, "scan"))
        result.timings["detect_s"] = time.perf_counter() - t1
        decided = judge_detection(det, rep, request, result)
        if "triggers" in result.artifacts:  # finite scores: pictures worth showing
            _attach_trigger_examples(result, det, prep)
        if decided is not None or not request.canary:
            return result
        t2 = time.perf_counter()
        if job is not None:
            canary, canary_s = job.result()
            result.timings["canary_wait_s"] = time.perf_counter() - t2
        else:
            canary, canary_s = run_canary(prep.model, prep.split, prep.loaded.num_classes,
                                          request, progress, det)
    result.timings["canary_s"] = canary_s
    result.canary = canary
    judge_canary(det, canary, request, result)
    result.timings["total_s"] = time.perf_counter() - t0
    return result


def _start_parallel_canary(prep: Prepared, request: ScanRequest, progress, stack):
    """The canary as a background job beside the main detection, or None (see canary module)."""
    if not canary_in_parallel(prep.model, request):
        return None
    from scanner.ops.background import Background, split_threads

    share = stack.enter_context(split_threads(2))
    copy = prep.model.clone()  # the job's own copy: the main detection mutates model flags
    num_classes = prep.loaded.num_classes
    job = Background(lambda check: run_canary(copy, prep.split, num_classes, request, progress,
                                              None, check), share).start()
    stack.callback(job.cancel)  # every early return stops the speculative canary
    return job


def _attach_trigger_examples(result: ScanResult, det, prep: Prepared) -> None:
    """Each class's reversed trigger on one held-out image, with the model's predictions.

    For the reports' before/after pictures (reports never compute). The image is the first
    held-out image of another class, so the trigger's effect is visible in the prediction.
    """
    from scanner.classifier import predict

    trig = det.triggers
    if trig is None:
        return
    x, y = prep.split.held.x, prep.split.held.y
    examples = []
    for i, c in enumerate(trig.classes):
        others = (y != c).nonzero().flatten()
        if len(others) == 0:
            continue
        before = x[others[:1]].cpu()
        after = trig.apply(i, before).clamp(0, 1)
        with torch.no_grad():
            preds = predict(prep.model, torch.cat([before, after]))
        examples.append({"class": int(c), "before": before[0], "after": after[0],
                         "pred_before": int(preds[0]), "pred_after": int(preds[1])})
    result.artifacts["trigger_examples"] = examples
