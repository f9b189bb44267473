"""The onnxruntime side of an ONNX import: sessions, batched runs, and the torch-vs-onnxruntime
parity check.

Why separate: onnxruntime is the reference the imported torch module is judged against, and the
export path (:mod:`scanner.io.export`) reuses the same sessions and random inputs to check a
repaired model; keeping them apart from the onnx2torch conversion in :mod:`scanner.io.onnx_import`
keeps each module to one job. Fail closed: non-finite reference outputs or a mismatch raise
:class:`ModelImportError` (exit 3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from scanner.errors import ModelImportError
from scanner.io.model_file import ParityResult
from scanner.io.spec import InputSpec

PARITY_RTOL = 1e-4  # max |delta| allowed, relative to the logit scale


def onnx_session(path_or_bytes, device: torch.device | None = None):
    """An onnxruntime session on the same kind of device as torch (CUDA only if both see it)."""
    import onnxruntime as ort

    from scanner.device import onnxruntime_providers

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(src, sess_options=opts, providers=onnxruntime_providers(device))


def run_onnx(session, x: np.ndarray, fixed_batch: int | None) -> np.ndarray:
    """Run a session on a batch; models with a fixed batch size get it in slices of that size."""
    name = session.get_inputs()[0].name
    if fixed_batch and x.shape[0] != fixed_batch:
        if x.shape[0] % fixed_batch:
            raise ValueError("batch not divisible by the model's fixed batch size")
        return np.concatenate([session.run(None, {name: x[i:i + fixed_batch]})[0]
                               for i in range(0, x.shape[0], fixed_batch)])
    return session.run(None, {name: x})[0]


def random_model_inputs(spec: InputSpec, batch: int, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    lo, hi = spec.value_range
    x = g.uniform(lo, hi, size=spec.model_input_shape(batch))
    return x.astype(np.uint8 if spec.dtype == "uint8" else np.float32)


def _non_finite(arr: np.ndarray) -> int:
    return int(arr.size - np.isfinite(arr).sum())


def check_parity(session, module: nn.Module, spec: InputSpec, batch: int = 4,
                 tol: float = PARITY_RTOL, seed: int = 0) -> ParityResult:
    """Compare torch and onnxruntime on random inputs (also proves the batch size is dynamic).

    Raises when onnxruntime itself gives NaN/inf: then the model, not the conversion, is broken,
    and blaming onnx2torch would send the user to the wrong fix.
    """
    fixed = spec.fixed_batch
    b = batch * (fixed or 1) if fixed and fixed > 1 else batch
    x = random_model_inputs(spec, b, seed)
    ref = run_onnx(session, x, fixed)
    bad_ref = _non_finite(ref)
    if bad_ref:
        lo, hi = spec.value_range
        raise ModelImportError(
            f"the model itself produces non-finite outputs (NaN or inf): onnxruntime returned "
            f"{bad_ref} of {ref.size} non-finite values for {b} random inputs in "
            f"[{lo:g}, {hi:g}]; no scan can judge such a model",
            hint="check the model in onnxruntime directly; if it expects another value range, "
                 "pass --value-range")
    with torch.no_grad():
        xt = torch.from_numpy(x)
        try:
            out = module(xt).numpy()
        except Exception as exc:
            raise ModelImportError(
                f"imported model fails at batch size {b} ({type(exc).__name__}: {exc})",
                hint="a fixed-batch export bakes the batch into ops the normaliser could not rewrite") from exc
    if out.shape != ref.shape:
        raise ModelImportError(f"imported model output shape {out.shape} != onnxruntime {ref.shape}")
    bad_out = _non_finite(out)
    # NaN compares false with everything: count it as an infinite difference, never as a pass.
    diff = float("inf") if bad_out else float(np.abs(out.astype(np.float64) - ref).max())
    scale = max(1.0, float(np.abs(ref).max()))
    return ParityResult(max_abs_diff=diff, logit_scale=scale, relative=diff / scale,
                        batch_sizes=[b], passed=diff / scale <= tol, non_finite=bad_out)


def parity_error(parity: ParityResult) -> ModelImportError:
    """The error for a failed :func:`check_parity`, naming NaN/inf or the size of the mismatch."""
    hint = "this model uses an op that onnx2torch converts inexactly; the scan would not be trustworthy"
    if parity.non_finite:
        return ModelImportError(
            f"imported model disagrees with onnxruntime: it returns {parity.non_finite} "
            "non-finite value(s) (NaN or inf) where onnxruntime's are all finite", hint=hint)
    return ModelImportError(
        f"imported model disagrees with onnxruntime: max |delta| = {parity.max_abs_diff:.3g} "
        f"at logit scale {parity.logit_scale:.3g} (relative {parity.relative:.2g} > {PARITY_RTOL:g})",
        hint=hint)

