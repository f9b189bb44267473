"""Export a (repaired or freshly trained) model to a verified, single-file ONNX, atomically.

Why this shape: the output replaces a release artefact, so it keeps the reference's input/output
names, a dynamic batch axis, an opset the reference's consumers can load (<= 17) and its metadata,
and it is only moved into place after onnxruntime agrees with the torch module.
"""

from __future__ import annotations

import copy
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from scanner import __version__
from scanner.errors import InconclusiveError, InputError
from scanner.io.onnx_normalize import MAX_OPSET, default_opset
from scanner.io.spec import InputSpec

EXPORT_RTOL = 1e-3
EXPORT_ATOL = 1e-5


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def export_onnx(module: nn.Module, reference_onnx: Path | None, out_path: Path, *,
                spec: InputSpec, verify_inputs: np.ndarray | None = None,
                actions: str = "", source_sha256: str = "", opset: int | None = None,
                extra_metadata: dict[str, str] | None = None) -> Path:
    """Write ``module`` to ``out_path`` as ONNX and verify it with onnxruntime.

    ``verify_inputs`` are inputs in the model's own format (e.g. the trusted images after
    preprocessing); without them random inputs in the spec's range are used. Returns ``out_path``.
    """
    out_path = Path(out_path)
    if reference_onnx is not None and (_same_file(Path(reference_onnx), out_path)
                                       or Path(reference_onnx).resolve() == out_path.resolve()):
        raise InputError(f"refusing to overwrite the input model {reference_onnx}",
                         hint="choose a different --out path")
    if out_path.is_dir():
        raise InputError(f"--out {out_path} is a directory; give a file name")
    out_path.parent.mkdir(parents=True, exist_ok=True)

    ref = onnx.load(str(reference_onnx), load_external_data=False) if reference_onnx else None
    if opset is None:
        opset = min(default_opset(ref), MAX_OPSET) if ref is not None else MAX_OPSET
        opset = max(opset, 11)
    metadata = {p.key: p.value for p in ref.metadata_props} if ref is not None else {}
    metadata.update({"scanner.version": __version__, "scanner.action": actions or "export"})
    if source_sha256:
        metadata["scanner.source_sha256"] = source_sha256
    metadata.update(extra_metadata or {})

    net = copy.deepcopy(module).cpu().eval()
    dummy = torch.from_numpy(_random_inputs(spec, 2))
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (dummy,), buf, dynamo=False, opset_version=opset,
                              input_names=[spec.input_name], output_names=[spec.output_name],
                              dynamic_axes={spec.input_name: {0: "batch"},
                                            spec.output_name: {0: "batch"}},
                              do_constant_folding=True)
    except Exception as exc:
        raise InconclusiveError(f"ONNX export failed ({type(exc).__name__}: {exc})") from exc
    model = onnx.load_from_string(buf.getvalue())
    del model.metadata_props[:]
    for k, v in metadata.items():
        model.metadata_props.add(key=k, value=str(v))

    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
        x = verify_inputs if verify_inputs is not None else _random_inputs(spec, 8)
        verify_export(tmp, net, x)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a release artefact is shared
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out_path


def _random_inputs(spec: InputSpec, batch: int) -> np.ndarray:
    from scanner.io.parity import random_model_inputs

    return random_model_inputs(spec, batch, seed=1)


def _refuse_non_finite(ref: np.ndarray, out: np.ndarray) -> None:
    """NaN/inf would pass the comparison below (NaN argmaxes agree, max() skips NaN): refuse."""
    if np.isfinite(ref).all() and np.isfinite(out).all():
        return
    who = ("the torch model itself" if not np.isfinite(out).all()
           else "onnxruntime on the exported file")
    raise InconclusiveError(f"{who} produces non-finite outputs (NaN or inf) on the verification "
                            "inputs; nothing was written")


def verify_export(path: Path, net: nn.Module, x: np.ndarray, batch_size: int = 256) -> None:
    """onnxruntime vs torch: allclose(rtol 1e-3, atol 1e-5) and 100% top-1 agreement."""
    from scanner.io.parity import onnx_session

    sess = onnx_session(Path(path), torch.device("cpu"))
    name = sess.get_inputs()[0].name
    worst, disagree = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        ref = sess.run(None, {name: xb})[0]
        with torch.no_grad():
            out = net(torch.from_numpy(xb)).numpy()
        _refuse_non_finite(ref, out)
        if not np.allclose(ref, out, rtol=EXPORT_RTOL, atol=EXPORT_ATOL):
            worst = max(worst, float(np.abs(ref - out).max()))
        disagree += int((ref.argmax(-1) != out.argmax(-1)).sum())
    if worst or disagree:
        raise InconclusiveError(
            f"exported ONNX does not match the torch model (max |delta| {worst:.3g}, "
            f"{disagree}/{len(x)} top-1 disagreements); nothing was written")
