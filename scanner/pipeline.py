"""The product's jobs as plain functions returning result objects (no printing, no exit codes).

The CLI parses flags and renders; everything a job computes lives in its result.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from scanner import __version__
from scanner.errors import InputError
from scanner.io.data import DEFAULT_MIN_PER_CLASS, load_trusted
from scanner.io.loader import load_model
from scanner.io.model_file import LoadedModel


@dataclass
class InspectResult:
    """What ``scan inspect`` found out about a model (and, optionally, its trusted data)."""

    model: str
    format: str
    sha256: str
    num_classes: int
    spec: dict
    op_histogram: dict[str, int]
    unsupported_ops: list[str]
    import_notes: list[str]
    parity: dict | None
    has_batchnorm: bool
    onnx_opset: int | None
    arch: str | None
    class_names: list[str] | None
    trusted: dict | None = None
    tool_version: str = __version__
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def clean_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of a [0,1]-input classifier."""
    from scanner.classifier import predict
    from scanner.ops.metrics import accuracy

    return accuracy(predict(model, x), y.cpu())


def inspect(model_path: str | Path, *, arch: str | None = None, spec_overrides: dict | None = None,
            trusted: str | Path | None = None, labels_file: str | Path | None = None,
            min_per_class: int = DEFAULT_MIN_PER_CLASS,
            device: torch.device | None = None) -> InspectResult:
    """Import a model (with the onnxruntime parity check) and summarise it.

    With ``trusted``, also load the data and measure clean accuracy: the quickest proof that
    preprocessing and the class map are right.
    """
    loaded: LoadedModel = load_model(model_path, arch=arch, spec_overrides=spec_overrides,
                                     device=device)
    result = InspectResult(
        model=str(model_path), format=loaded.format, sha256=loaded.sha256,
        num_classes=loaded.num_classes, spec=loaded.spec.to_dict(),
        op_histogram=loaded.op_histogram, unsupported_ops=loaded.unsupported_ops,
        import_notes=loaded.import_notes,
        parity=asdict(loaded.parity) if loaded.parity else None,
        has_batchnorm=loaded.has_batchnorm, onnx_opset=loaded.onnx_opset, arch=loaded.arch,
        class_names=loaded.class_names)
    if trusted is not None:
        data = load_trusted(trusted, loaded.spec, loaded.num_classes, labels_file=labels_file,
                            model_class_names=loaded.class_names, min_per_class=min_per_class)
        acc = clean_accuracy(loaded.classifier(), data.x, data.y)
        result.trusted = {"source": data.source, "images": len(data),
                          "class_counts": data.class_counts(), "notes": data.notes,
                          "clean_accuracy": acc, "class_names": data.class_names}
    return result


# --------------------------------------------------------------------------- detect

VERDICT_PASS = "pass"
VERDICT_BACKDOOR = "backdoor"
VERDICT_INCONCLUSIVE = "inconclusive"


CANARY_MODES = ("auto", "parallel", "sequential")


@dataclass
class ScanSettings:
    """Everything besides the model and data that decides a scan (recorded in every report)."""

    device: str = "cpu"
    seed: int = 0
    budget_level: str = "standard"
    budget: dict = field(default_factory=dict)
    method: str | None = None  # None: the policy's gate.method
    canary: bool = True
    canary_scope: str = "all"
    policy_source: str = ""
    cti_threshold: float = 3.5
    nc_threshold: float = 2.0
    mask_threshold: float = 3.5
    ratio_threshold: float = 3.5
    max_cda_drop: float = 0.02
    repair_params: dict = field(default_factory=dict)  # the policy's [repair.params]
    # "auto" | "fp32" | "bf16" as asked; _prepare records the resolved one (scanner.ops.precision)
    precision: str = "auto"
    channels_last: bool = False  # set by _prepare: the model's conv weights ran in NHWC
    # "auto" | "parallel" | "sequential": run the canary beside the main detection (CPU)
    canary_mode: str = "auto"
    canary_parallel: bool = False  # set by detect: the canary ran beside the main detection


@dataclass
class ScanResult:
    """The verdict and the evidence behind it. Reports render this; they never compute."""

    verdict: str
    reasons: list[str]
    model: dict
    trusted: dict
    settings: ScanSettings
    detection: dict | None = None
    repair: dict | None = None
    canary: dict | None = None
    timings: dict = field(default_factory=dict)
    tool_version: str = __version__
    artifacts: dict = field(default_factory=dict)  # not serialised: tensors for reports

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("artifacts")
        return d


def _repair_summary(rep) -> dict:
    return {"pivot_cda": rep.pivot_cda, "best_cda": rep.best_cda, "best_step": rep.best_step,
            "cda_drop_se": None if math.isnan(rep.cda_drop_se) else rep.cda_drop_se,
            "moved": rep.moved, "param_distance": rep.param_distance, "notes": rep.notes,
            "trajectory": [{"step": c.step, "cda": c.cda, **c.extra} for c in rep.trajectory],
            "wall_s": rep.wall_s}


def _detection_summary(det) -> dict:
    return {"method": det.method, "model_score": det.model_score, "flagged": det.flagged,
            "top_class": det.top_class, "wall_s": det.wall_s, "notes": det.notes,
            "per_class": [asdict(s) for s in det.per_class]}


def _phase(progress, name: str):
    """Label a phase's progress callbacks so a log line says what is running."""
    if progress is None:
        return None

    def report(step: int, total: int, info: dict) -> None:
        inner = info.get("phase")  # a phase inside a phase: "canary: pivotal tuning"
        progress(step, total, {**info, "phase": f"{name}: {inner}" if inner else name})
    return report


def _loops(settings: ScanSettings, device: torch.device):
    """The precision context of a scan's optimisation loops (measurements stay float32)."""
    from scanner.ops.precision import Compute, resolve_precision

    device = torch.device(device)  # callers pass "cpu" as well as torch.device
    return Compute(device, resolve_precision(settings.precision, device)).loops()


def run_detection(model, tune, held, num_classes: int, settings: ScanSettings, budget,
                  device: torch.device, progress=None, *, classes: list[int] | None = None,
                  reference=None) -> tuple:
    """Repair (Pivotal Tuning) then CTI or ratio, or mask/Neural Cleanse alone.

    Returns (detection, repair|None). ``classes`` + ``reference``: invert only those classes and
    take the others' values from ``reference`` (a full detection of the same kind).
    """
    with _loops(settings, device):
        return _run_detection(model, tune, held, num_classes, settings, budget, device,
                              progress, classes=classes, reference=reference)


def _run_detection(model, tune, held, num_classes: int, settings: ScanSettings, budget,
                   device: torch.device, progress=None, *, classes: list[int] | None = None,
                   reference=None) -> tuple:
    sub = {"classes": classes, "reference": reference}
    from scanner.defenses.pivotal import CALIBRATION, PivotalConfig, pivotal_tuning
    from scanner.detectors.cti import CTIConfig, cti_detect
    from scanner.detectors.inversion import InversionConfig
    from scanner.detectors.neural_cleanse import NCConfig, nc_detect
    from scanner.detectors.ratio import ratio_detect

    inv = InversionConfig(steps=budget.invert_steps, batch_size=budget.invert_batch,
                          chunk=budget.invert_chunk, seed=settings.seed)
    if settings.method in ("nc", "mask"):
        stat = "mad" if settings.method == "nc" else "log_mad"
        return nc_detect(model, tune.x, tune.y, held.x, held.y, num_classes,
                         NCConfig(inv, threshold=_threshold(settings), statistic=stat),
                         device=device, progress=_phase(progress, "trigger inversion"), **sub), None
    cfg = PivotalConfig.for_device(device, steps=budget.repair_steps,
                                   batch_size=budget.repair_batch, seed=settings.seed,
                                   max_cda_drop=settings.max_cda_drop, **CALIBRATION)
    rep = pivotal_tuning(model, tune.x, tune.y, held.x, held.y, cfg, device=device,
                         progress=_phase(progress, "pivotal tuning"))
    if settings.method == "ratio":
        return ratio_detect(model, rep.model, tune.x, tune.y, held.x, held.y, num_classes,
                            NCConfig(inv, threshold=_threshold(settings), statistic="log_mad"),
                            device=device, progress=_phase(progress, "trigger inversion x2"),
                            **sub), rep
    det = cti_detect(model, rep.model, tune.x, tune.y, held.x, held.y, num_classes,
                     CTIConfig(inversion=inv, threshold=_threshold(settings)), device=device,
                     progress=_phase(progress, "calibrated trigger inversion"), **sub)
    return det, rep


def _all_finite(det) -> bool:
    import math

    return math.isfinite(det.model_score) and all(
        math.isfinite(s.score) and math.isfinite(s.trigger_l1) for s in det.per_class)


def _threshold(settings: ScanSettings) -> float:
    return {"nc": settings.nc_threshold, "mask": settings.mask_threshold,
            "ratio": settings.ratio_threshold}.get(
        settings.method, settings.cti_threshold)


def _is_flagged(det, settings: ScanSettings) -> bool:
    """The model score (CTI: max calibrated score; NC: max low-side anomaly index) vs threshold."""
    return det.model_score >= _threshold(settings)


@dataclass
class _Prepared:
    """A model and its trusted data, loaded and sanity-checked: what every job starts from."""

    loaded: LoadedModel
    model: object  # SplitClassifier on the device
    tune: object
    held: object
    budget: object
    result: ScanResult


def _prepare(model_path, trusted, *, arch, spec_overrides, labels_file, policy, settings,
             budget_overrides, device, t0: float) -> _Prepared | ScanResult:
    """Load the model and data, fill the settings from the policy, check clean accuracy.

    Returns a finished (inconclusive) ScanResult when the clean accuracy says the scan would be
    meaningless: fail closed before spending minutes on detection.
    """
    import time

    from scanner.classifier import SplitClassifier
    from scanner.ops.precision import resolve_precision, to_fast_layout

    settings.device = str(device)
    settings.precision = resolve_precision(settings.precision, device)
    settings.canary = settings.canary and policy.gate.canary
    settings.canary_scope = policy.gate.canary_scope
    settings.method = settings.method or policy.gate.method
    settings.cti_threshold = policy.gate.cti_threshold
    settings.nc_threshold = policy.gate.nc_threshold
    settings.mask_threshold = policy.gate.mask_threshold
    settings.ratio_threshold = policy.gate.ratio_threshold
    settings.max_cda_drop = policy.repair.max_cda_drop
    settings.repair_params = dict(policy.repair_params)
    settings.policy_source = policy.source
    budget = policy.budget_for(device.type, settings.budget_level, **(budget_overrides or {}))
    settings.budget = budget.to_dict()
    torch.manual_seed(settings.seed)

    loaded = load_model(model_path, arch=arch, spec_overrides=spec_overrides, device=device)
    data = load_trusted(trusted, loaded.spec, loaded.num_classes, labels_file=labels_file,
                        model_class_names=loaded.class_names,
                        min_per_class=policy.gate.min_per_class)
    model = SplitClassifier.from_loaded(loaded).to(device).eval()
    settings.channels_last = to_fast_layout(model, data.x[:8].to(device))
    model_info = {"path": str(model_path), "sha256": loaded.sha256, "format": loaded.format,
                  "num_classes": loaded.num_classes, "spec": loaded.spec.to_dict(),
                  "class_names": data.class_names, "import_notes": loaded.import_notes}
    acc = clean_accuracy(model, data.x.to(device), data.y.to(device))
    trusted_info = {"source": data.source, "images": len(data), "clean_accuracy": acc,
                    "notes": data.notes}
    timings = {"load_s": time.perf_counter() - t0}
    result = ScanResult(VERDICT_INCONCLUSIVE, [], model_info, trusted_info, settings,
                        timings=timings)
    floor = max(policy.gate.min_clean_accuracy, 1.5 / max(2, loaded.num_classes))
    if acc < floor:
        result.reasons.append(
            f"clean accuracy on the trusted data is {acc:.2f} (< {floor:.2f}): the preprocessing "
            "(--mean/--std/--value-range/--layout) or the class map is probably wrong, or the "
            "model is broken; refusing to judge it")
        return result
    tune, held = data.split(policy.gate.holdout, seed=settings.seed)
    return _Prepared(loaded, model, tune, held, budget, result)


def detect(model_path: str | Path, trusted: str | Path, *, arch: str | None = None,
           spec_overrides: dict | None = None, labels_file: str | Path | None = None,
           policy=None, settings: ScanSettings | None = None, budget_overrides: dict | None = None,
           device: torch.device | None = None, progress=None) -> ScanResult:
    """Scan one model. Never returns "pass" for a scan that did not really run (fail closed)."""
    import time

    from scanner.policy import load_policy

    t0 = time.perf_counter()
    policy = policy or load_policy()
    device = device or torch.device("cpu")
    settings = settings or ScanSettings()
    if settings.canary_mode not in CANARY_MODES:  # before minutes of loading and checks
        raise InputError(f"--canary-mode must be one of {', '.join(CANARY_MODES)}, "
                         f"got {settings.canary_mode!r}")
    prep = _prepare(model_path, trusted, arch=arch, spec_overrides=spec_overrides,
                    labels_file=labels_file, policy=policy, settings=settings,
                    budget_overrides=budget_overrides, device=device, t0=t0)
    if isinstance(prep, ScanResult):
        return prep
    loaded, model, tune, held, budget = prep.loaded, prep.model, prep.tune, prep.held, prep.budget
    result, timings = prep.result, prep.result.timings

    parallel = _canary_in_parallel(model, settings, device)
    settings.canary_parallel = parallel
    with contextlib.ExitStack() as stack:
        job = None
        if parallel:
            from scanner.ops.background import Background, split_threads

            share = stack.enter_context(split_threads(2))
            copy = model.clone()  # the job's own copy: the main detection mutates model flags
            job = Background(lambda check: _canary(copy, tune, held, loaded.num_classes, settings,
                                                   budget, device, progress, None, check),
                             share).start()
            stack.callback(job.cancel)  # every early return below stops the speculative canary
        t1 = time.perf_counter()
        det, rep = run_detection(model, tune, held, loaded.num_classes, settings, budget, device,
                                 progress)
        timings["detect_s"] = time.perf_counter() - t1
        verdict = _judge_detection(det, rep, settings, result)
        if verdict is not None or not settings.canary:
            return result
        t2 = time.perf_counter()
        if job is not None:
            canary, canary_s = job.result()
            timings["canary_wait_s"] = time.perf_counter() - t2
        else:
            canary, canary_s = _canary(model, tune, held, loaded.num_classes, settings, budget,
                                       device, progress, det)
    timings["canary_s"] = canary_s
    result.canary = canary
    thr = _threshold(settings)
    if canary["detected"]:
        result.verdict = VERDICT_PASS
        result.reasons.append(f"{det.method} model score {det.model_score:.3f} < threshold "
                              f"{thr:.3f}, and the same scan flagged a "
                              f"known implanted backdoor (canary score {canary['model_score']:.3f})")
    else:
        result.reasons.append("the sensitivity canary was not detected: this scan's budget, "
                              "preprocessing or trusted data is too weak to trust a pass "
                              "(try --budget thorough or more trusted images)")
    timings["total_s"] = time.perf_counter() - t0
    return result


def _judge_detection(det, rep, settings: ScanSettings, result: ScanResult) -> str | None:
    """Record the main detection in ``result``; the verdict when it decides the scan alone.

    None means "a pass, if the canary confirms it" (or a plain pass when the canary is off).
    """
    result.detection = {**_detection_summary(det), "threshold": _threshold(settings)}
    if not _all_finite(det):
        result.reasons.append("the detector produced non-finite scores (diverged optimisation); "
                              "refusing to judge")
        return VERDICT_INCONCLUSIVE
    result.artifacts["triggers"] = det.triggers
    if rep is not None:
        result.repair = _repair_summary(rep)
        if not rep.moved:
            result.reasons.append("the repair found no state within the accuracy budget, so the "
                                  "calibrated scores compare the model with itself")
            return VERDICT_INCONCLUSIVE
    thr = _threshold(settings)
    if _is_flagged(det, settings):
        result.verdict = VERDICT_BACKDOOR
        result.reasons.append(f"{det.method} model score {det.model_score:.3f} >= threshold "
                              f"{thr:.3f}; most suspicious class {det.top_class}")
        return VERDICT_BACKDOOR
    if not settings.canary:
        result.verdict = VERDICT_PASS
        result.reasons.append(f"{det.method} model score {det.model_score:.3f} < threshold "
                              f"{thr:.3f} (canary disabled: this pass is unverified)")
    return None


def _canary_in_parallel(model, settings: ScanSettings, device: torch.device) -> bool:
    """Run the canary beside the main detection instead of after it?

    Only on a CPU with at least two torch threads (each loop then gets half), only when the
    canary re-scans every class (scope "target" needs the main scan's values first), and only for
    models without dropout: both loops would draw from torch's one global generator, and the
    interleaving would make a seeded scan unrepeatable. The price: a model that is flagged pays
    for a canary it did not need, on half the cores.
    """
    if settings.canary_mode == "sequential" or not settings.canary:
        return False
    ok = (torch.device(device).type == "cpu" and torch.get_num_threads() >= 2
          and settings.canary_scope == "all"
          and not any(isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in model.modules()))
    if settings.canary_mode == "parallel" and not ok:
        raise InputError("--canary-mode parallel needs a CPU with at least two threads, canary "
                         "scope \"all\" and a model without dropout",
                         hint="use --canary-mode auto")
    return ok


def _canary(model, tune, held, num_classes: int, settings: ScanSettings, budget, device,
            progress, reference, check=None) -> tuple[dict, float]:
    """Implant the canary into a copy of ``model`` and run the same detection on it.

    ``reference``: the main detection, needed only for scope "target". ``check``: raises when a
    speculative canary is no longer wanted. Returns (the report's canary record, seconds).
    """
    import time

    from scanner.detectors.canary import CanaryConfig, implant_canary

    t = time.perf_counter()
    if check is not None:
        check()
    with _loops(settings, device):
        implant = implant_canary(model, tune.x, tune.y, held.x, held.y, num_classes,
                                 CanaryConfig(steps=budget.canary_steps, seed=settings.seed),
                                 device=device)
    canary = {"target": implant.target, "implant_asr": implant.asr, "implant_cda": implant.cda,
              "implanted": implant.ok, "notes": implant.notes, "scope": settings.canary_scope}
    if not implant.ok:
        canary["detected"] = False
        return canary, time.perf_counter() - t
    # scope "target": only the implanted class is inverted on the canary copy; the other
    # classes keep this scan's values (scanner.detectors.canary says what that costs)
    only = ({"classes": [implant.target], "reference": reference}
            if settings.canary_scope == "target" else {})
    report = _phase(progress, "canary")
    if check is not None:
        def report(step, total, info, _inner=report):  # noqa: E306 - a checked progress
            check()
            if _inner is not None:
                _inner(step, total, info)
    cdet, _ = run_detection(implant.model, tune, held, num_classes, settings, budget, device,
                            report, **only)
    # Detected means: flagged, and flagged for the class the canary actually targets.
    hit = _all_finite(cdet) and _is_flagged(cdet, settings) and cdet.top_class == implant.target
    canary.update({"model_score": cdet.model_score, "top_class": cdet.top_class, "detected": hit})
    return canary, time.perf_counter() - t


# --------------------------------------------------------------------------- repair

@dataclass
class RepairJobResult:
    """What ``scan repair`` did: the repair, the verified export, and a re-scan of the result."""

    status: str  # "repaired" | "not-repaired" | "inconclusive"
    reasons: list[str]
    model: dict
    trusted: dict
    settings: ScanSettings
    defense: str
    repair: dict | None = None
    output: dict | None = None  # path, sha256, verified
    rescan: dict | None = None  # the detector's view of the repaired model
    timings: dict = field(default_factory=dict)
    tool_version: str = __version__

    def to_dict(self) -> dict:
        return asdict(self)


def _run_defense(name: str, model, tune, held, budget, settings: ScanSettings, device, progress,
                 detection=None):
    """Call a repair method by name with the budget's steps, the policy's Delta and its
    ``[repair.params]`` (which win over the budget: they were chosen for this defense).

    ``detection``: a scan of the same model, for a defense that takes one (Pivotal Tuning's focus).
    """
    from scanner.defenses.registry import config_for, get_defense

    cfg_cls, fn = get_defense(name)
    known = {f for f in getattr(cfg_cls, "__dataclass_fields__", {})}
    kw = {"steps": budget.repair_steps, "batch_size": budget.repair_batch,
          "seed": settings.seed, "max_cda_drop": settings.max_cda_drop,
          "focus_steps": budget.invert_steps}
    kw = {k: v for k, v in kw.items() if k in known}
    cfg = config_for(cfg_cls, name, device, **{**kw, **settings.repair_params})
    with _loops(settings, device):
        extra = {"detection": detection} if detection is not None else {}
        return fn(model, tune.x, tune.y, held.x, held.y, cfg, device=device,
                  progress=_phase(progress, f"repair ({name})"), **extra)


def _save_repaired(loaded: LoadedModel, net, out: Path, held_x: torch.Tensor, defense: str) -> dict:
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


def repair(model_path: str | Path, trusted: str | Path, out: str | Path, *,
           arch: str | None = None, spec_overrides: dict | None = None,
           labels_file: str | Path | None = None, policy=None, defense: str | None = None,
           settings: ScanSettings | None = None, budget_overrides: dict | None = None,
           rescan: bool = True, device: torch.device | None = None,
           progress=None, prior_report: str | Path | None = None) -> RepairJobResult:
    """Repair a model, export it verified, and (by default) scan the repaired model again.

    Writes ``out`` only when the repair moved the model within the accuracy budget and the export
    matches; never touches the input file. ``prior_report``: a scan's report.json of this same
    file (checked by SHA-256); Pivotal Tuning takes its suspect class from it instead of
    inverting triggers again.
    """
    import time

    from scanner.policy import load_policy

    t0 = time.perf_counter()
    policy = policy or load_policy()
    device = device or torch.device("cpu")
    settings = settings or ScanSettings()
    settings.canary = False  # the re-scan is advisory; a repair's pass is its verified export
    defense = defense or policy.repair.defense
    from scanner.defenses.registry import canonical_name

    if prior_report is not None and canonical_name(defense) != "pivotal":
        from scanner.errors import InputError

        raise InputError(f"--from-report is used by the pivotal defense only, not {defense!r}",
                         hint="drop --from-report, or repair with --defense pivotal")
    out = Path(out)
    src = Path(model_path)
    if src.exists() and out.exists() and out.resolve() == src.resolve():
        from scanner.errors import InputError

        raise InputError(f"refusing to overwrite the input model {src}",
                         hint="choose a different --out path")
    prep = _prepare(model_path, trusted, arch=arch, spec_overrides=spec_overrides,
                    labels_file=labels_file, policy=policy, settings=settings,
                    budget_overrides=budget_overrides, device=device, t0=t0)
    if isinstance(prep, ScanResult):
        return RepairJobResult("inconclusive", prep.reasons, prep.model, prep.trusted, settings,
                               defense, timings=prep.timings)
    base = prep.result
    job = RepairJobResult("not-repaired", [], base.model, base.trusted, settings, defense,
                          timings=base.timings)
    prior = None
    if prior_report is not None:
        from scanner.io.prior_report import load_prior_detection

        prior = load_prior_detection(prior_report, prep.loaded.sha256,
                                     prep.loaded.num_classes)
    t1 = time.perf_counter()
    rep = _run_defense(defense, prep.model, prep.tune, prep.held, prep.budget, settings, device,
                       progress, detection=prior)
    job.timings["repair_s"] = time.perf_counter() - t1
    job.repair = _repair_summary(rep)
    job.repair["cda_drop"] = rep.cda_drop
    if not rep.moved:
        job.reasons.append(f"{defense} found no state within the accuracy budget "
                           f"(max drop {settings.max_cda_drop:.3f}) that differs from the input; "
                           "nothing was written")
        return job
    job.output = _save_repaired(prep.loaded, rep.model.cpu().net, out, prep.held.x, defense)
    rep.model.to(device)
    job.status = "repaired"
    job.reasons.append(f"{defense}: held-out clean accuracy {rep.pivot_cda:.3f} -> "
                       f"{rep.best_cda:.3f} (step {rep.best_step}); written to {out}")
    if rescan:
        t2 = time.perf_counter()
        rescan = ScanSettings(**{**asdict(settings), "method": "mask"
                                 if settings.method in ("cti", "ratio") else settings.method})
        det, _ = run_detection(rep.model, prep.tune, prep.held, prep.loaded.num_classes, rescan,
                               prep.budget, device, _phase(progress, "re-scan"))
        job.timings["rescan_s"] = time.perf_counter() - t2
        # the re-scan's own detector and threshold (a mask score is not on CTI's 0..1 scale)
        flagged = _all_finite(det) and _is_flagged(det, rescan)
        job.rescan = {**_detection_summary(det), "still_suspected": flagged}
        if flagged:
            job.reasons.append(f"the repaired model is still flagged by {det.method} (score "
                               f"{det.model_score:.3f}, class {det.top_class})")
    job.timings["total_s"] = time.perf_counter() - t0
    return job
