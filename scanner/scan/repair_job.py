"""``scan repair``: repair, export verified and atomically, then scan the repaired model again.

The input file is never touched; nothing is written unless the repair moved the model within the
accuracy budget and the export agrees with PyTorch.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from scanner.errors import InputError
from scanner.io.model_file import LoadedModel
from scanner.scan.detect_job import loops, run_detection
from scanner.io.trusted_split import TrustedSplit
from scanner.scan.prepare import prepare
from scanner.scan.progress import ProgressFn, phase
from scanner.scan.request import ScanRequest
from scanner.scan.results import RepairJobResult, ScanResult, detection_summary, repair_summary
from scanner.scan.verdict import all_finite, class_label, is_flagged


def run_defense(model, split: TrustedSplit, request: ScanRequest, progress=None,
                detection=None):
    """The request's repair method with the budget's steps, the accuracy budget and the
    policy's ``[repair.params]`` (which win over the budget: they were chosen for this defense).

    ``detection``: a scan of the same model, for a defense that takes one (Pivotal Tuning's focus).
    """
    from scanner.defenses.registry import config_for, get_defense

    name, budget = request.defense, request.budget
    cfg_cls, fn = get_defense(name)
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    kw = {"steps": budget.repair_steps, "batch_size": budget.repair_batch,
          "seed": request.seed, "max_cda_drop": request.max_cda_drop,
          "focus_steps": budget.invert_steps}
    kw = {k: v for k, v in kw.items() if k in known}
    cfg = config_for(cfg_cls, name, request.torch_device, **{**kw, **request.repair_params})
    with loops(request):
        extra = {"detection": detection} if detection is not None else {}
        return fn(model, split, cfg,
                  device=request.torch_device, progress=phase(progress, f"repair ({name})"),
                  **extra)


def save_repaired(loaded: LoadedModel, net, out: Path, held_x: torch.Tensor, defense: str) -> dict:
    """Write the repaired weights in the input's format family, verified, atomically."""
    from scanner.io.model_file import sha256_file
    from scanner.io.spec import Preprocess
    from scanner.ops.precision import to_standard_layout

    out = Path(out)
    to_standard_layout(net)  # safetensors needs contiguous tensors; ONNX gets plain NCHW weights
    if out.suffix.lower() == ".safetensors":
        from scanner.io.safetensors_import import save_safetensors

        save_safetensors(net, out, source=loaded.source, metadata={
            "scanner.action": f"repair:{defense}", "scanner.source_sha256": loaded.sha256})
        return {"path": str(out), "sha256": sha256_file(out), "format": "safetensors",
                "verified": "reloaded with strict key check"}
    from scanner.io.export import export_onnx

    with torch.no_grad():
        x = Preprocess(loaded.spec)(held_x.cpu()).numpy() if loaded.spec.dtype == "float32" else None
    ref = loaded.source if loaded.format == "onnx" else None
    export_onnx(net, ref, out, spec=loaded.spec, verify_inputs=x, actions=f"repair:{defense}",
                source_sha256=loaded.sha256)
    return {"path": str(out), "sha256": sha256_file(out), "format": "onnx",
            "verified": "onnxruntime agrees with torch on the held-out images (top-1 100%)"}


def check_out_path(model_path: str | Path, out: str | Path) -> None:
    """Refuse, before any work, an output that would overwrite the input or cannot be written."""
    from scanner.io.atomic import check_writable_file

    out, src = Path(out), Path(model_path)
    if out.suffix.lower() not in (".onnx", ".safetensors"):
        raise InputError(f"--out must end in .onnx or .safetensors, got {out.name!r}")
    if src.exists() and out.exists() and out.resolve() == src.resolve():
        raise InputError(f"refusing to overwrite the input model {src}",
                         hint="choose a different --out path")
    check_writable_file(out, "--out")


def repair(model_path: str | Path, trusted: str | Path, out: str | Path,
           request: ScanRequest | None = None, *, rescan: bool = True,
           progress: ProgressFn | None = None,
           prior_report: str | Path | None = None) -> RepairJobResult:
    """Repair a model, export it verified, and (by default) scan the repaired model again.

    ``prior_report``: a scan's report.json of this same file (checked by SHA-256); Pivotal
    Tuning takes its suspect class from it instead of inverting triggers again.
    """
    t0 = time.perf_counter()
    # the re-scan is advisory: a repair's pass is its verified export, so no canary
    request = dataclasses.replace(request or ScanRequest(), canary=False)
    if prior_report is not None and request.defense != "pivotal":
        raise InputError(f"--from-report is used by the pivotal defense only, not "
                         f"{request.defense!r}",
                         hint="drop --from-report, or repair with --defense pivotal")
    check_out_path(model_path, out)
    out = Path(out)
    prep = prepare(model_path, trusted, request, progress)
    if isinstance(prep, ScanResult):
        return RepairJobResult("inconclusive", prep.reasons, prep.model, prep.trusted, request,
                               request.defense, timings=prep.timings, run=prep.run)
    base = prep.result
    job = RepairJobResult("not-repaired", [], base.model, base.trusted, request, request.defense,
                          timings=base.timings, run=base.run)
    prior = None
    if prior_report is not None:
        from scanner.io.prior_report import load_prior_detection

        prior = load_prior_detection(prior_report, prep.loaded.sha256, prep.loaded.num_classes)
    t1 = time.perf_counter()
    rep = run_defense(prep.model, prep.split, request, progress, detection=prior)
    job.timings["repair_s"] = time.perf_counter() - t1
    job.repair = {**repair_summary(rep), "cda_drop": rep.cda_drop}
    if not rep.moved:
        job.reasons.append(f"{request.defense} found no state within the accuracy budget "
                           f"(max drop {request.max_cda_drop:.3f}) that differs from the input; "
                           "nothing was written")
        return job
    job.output = save_repaired(prep.loaded, rep.model.cpu().net, out, prep.split.held.x,
                               request.defense)
    rep.model.to(request.torch_device)
    job.status = "repaired"
    job.reasons.append(f"{request.defense}: held-out clean accuracy {rep.pivot_cda:.3f} -> "
                       f"{rep.best_cda:.3f} (step {rep.best_step}); written to {out}")
    if rescan:
        t2 = time.perf_counter()
        # the calibrated detectors would repair the repair: re-scan with mask, on its own scale
        again = request.with_method("mask" if request.method in ("cti", "ratio")
                                    else request.method)
        det, _ = run_detection(rep.model, prep.split, prep.loaded.num_classes, again,
                               phase(progress, "re-scan"))
        job.timings["rescan_s"] = time.perf_counter() - t2
        flagged = all_finite(det) and is_flagged(det, again)
        job.rescan = {**detection_summary(det, again.threshold), "still_suspected": flagged}
        if flagged:
            name = class_label(det.top_class, job.model.get("class_names"))
            job.reasons.append(f"the repaired model is still flagged by {det.method} (score "
                               f"{det.model_score:.3f}, {name})")
    job.timings["total_s"] = time.perf_counter() - t0
    return job
