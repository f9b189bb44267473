"""ONNX -> PyTorch import through onnx2torch, behind the normalisation pass, with a parity check.

Fail closed: a model that does not convert, or whose torch version disagrees with onnxruntime,
raises :class:`ModelImportError` (exit 3) naming the op or the size of the mismatch. This module
reads the graph (external data, input spec, class names, ops) and converts it; the onnxruntime
sessions and the parity check itself live in :mod:`scanner.io.parity`.
"""

from __future__ import annotations

import collections
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.external_data_helper
import torch
from onnx import numpy_helper
from torch import nn

from scanner.errors import InputError, ModelImportError
from scanner.io.model_file import LoadedModel, sha256_file
from scanner.io.onnx_normalize import default_opset, normalize
from scanner.io.parity import check_parity, onnx_session, parity_error, random_model_inputs
from scanner.io.spec import InputSpec

_ELEM_TYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.UINT8: "uint8",
               onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.DOUBLE: "float64"}


def read_onnx(path: Path) -> onnx.ModelProto:
    """Load an ONNX file including external data; clear errors for junk files."""
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    try:
        skeleton = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from exc
    missing = [p.name for p in external_data_files(path, skeleton) if not p.is_file()]
    if missing:
        raise InputError(f"{path.name}: external data file(s) missing: {', '.join(missing)}",
                         hint="keep the .onnx.data side file next to the .onnx file")
    try:
        onnx.external_data_helper.load_external_data_for_model(skeleton, str(path.parent))
    except Exception as exc:
        raise InputError(f"{path}: cannot read its external data ({type(exc).__name__}: {exc})") from exc
    return skeleton


def external_data_files(path: Path, model: onnx.ModelProto | None = None) -> list[Path]:
    """Side files holding the weights of an ONNX file saved with external data."""
    m = model if model is not None else onnx.load(str(path), load_external_data=False)
    files: list[str] = []
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), None)
            if loc and loc not in files:
                files.append(loc)
    return [path.parent / f for f in files]


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(collections.Counter(n.op_type for n in model.graph.node).most_common())


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """Ops (``Type-vN``) that onnx2torch has no converter for at this model's opset."""
    from onnx import defs
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

    opsets = {o.domain or "": o.version for o in model.opset_import}
    missing = []
    for op_type, domain in sorted({(n.op_type, n.domain or "") for n in model.graph.node}):
        try:
            version = defs.get_schema(op_type, max_inclusive_version=opsets.get(domain, 1),
                                      domain=domain).since_version
        except Exception:
            missing.append(f"{domain + '.' if domain else ''}{op_type}")
            continue
        desc = OperationDescription(domain=domain, operation_type=op_type, version=version)
        if desc not in _CONVERTER_REGISTRY:
            missing.append(f"{op_type}-v{version}")
    return missing


def _const_vector(model: onnx.ModelProto, name: str, channels: int) -> np.ndarray | None:
    for t in model.graph.initializer:
        if t.name == name:
            arr = numpy_helper.to_array(t).astype(np.float64).reshape(-1)
            if arr.size in (1, channels):
                return arr
    return None


def detect_graph_normalization(model: onnx.ModelProto, channels: int
                               ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Find ``(x - mean) / std`` baked in as leading Sub then Div/Mul on the input."""
    g = model.graph
    cur = g.input[0].name
    mean = np.zeros(channels)
    std = np.ones(channels)
    found = False
    for _ in range(3):
        users = [n for n in g.node if cur in n.input]
        if len(users) != 1 or users[0].op_type not in ("Sub", "Div", "Mul", "Add"):
            break
        node = users[0]
        other = [i for i in node.input if i != cur]
        if len(other) != 1 or node.input[0] != cur:
            break
        vec = _const_vector(model, other[0], channels)
        if vec is None:
            break
        if node.op_type == "Sub":
            mean = mean + vec * std
        elif node.op_type == "Add":
            mean = mean - vec * std
        elif node.op_type == "Div":
            std = std * vec
        elif node.op_type == "Mul":
            std = std / vec
        found, cur = True, node.output[0]
    if not found:
        return None
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def infer_spec(model: onnx.ModelProto, overrides: dict | None = None) -> InputSpec:
    """Infer the InputSpec from the graph; ``overrides`` (flags/config) win over inference."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    inp = model.graph.input[0]
    tt = inp.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if len(dims) != 4:
        raise InputError(f"model input {inp.name!r} has rank {len(dims)}; expected a 4-D image batch")
    sources: dict[str, str] = {}
    if "layout" in overrides:
        layout = overrides["layout"]
        sources["layout"] = "flag"
    elif dims[1] in (1, 3, 4):
        layout, sources["layout"] = "NCHW", "graph"
    elif dims[3] in (1, 3, 4):
        layout, sources["layout"] = "NHWC", "graph"
    else:
        layout, sources["layout"] = "NCHW", "default"
    c, h, w = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
    if None in (c, h, w):
        if "size" not in overrides:
            raise InputError(f"model input {inp.name!r} has dynamic spatial size {dims}",
                             hint="pass --input-size HxW")
    h, w = overrides.get("size", (h, w))
    dtype = _ELEM_TYPES.get(tt.elem_type, str(tt.elem_type))
    value_range = overrides.get("value_range")
    if value_range is not None:
        sources["value_range"] = "flag"
    elif dtype == "uint8":
        value_range, sources["value_range"] = (0.0, 255.0), "graph"
    else:
        value_range, sources["value_range"] = (0.0, 1.0), "default"
    norm = detect_graph_normalization(model, c)
    spec = InputSpec(
        layout=layout, channels=int(c), height=int(h), width=int(w), value_range=value_range,
        mean=overrides.get("mean"), std=overrides.get("std"),
        graph_mean=norm[0] if norm else None, graph_std=norm[1] if norm else None,
        input_name=inp.name, output_name=model.graph.output[0].name,
        fixed_batch=dims[0], dtype=dtype, sources=sources)
    spec.sources["mean/std"] = "flag" if spec.mean or spec.std else ("graph" if norm else "none")
    return spec


def _num_classes(model: onnx.ModelProto) -> int | None:
    d = model.graph.output[0].type.tensor_type.shape.dim
    return int(d[-1].dim_value) if d and d[-1].HasField("dim_value") else None


def convert(model: onnx.ModelProto) -> nn.Module:
    """onnx2torch conversion of an already normalised model, naming unsupported ops on failure."""
    import onnx2torch

    missing = unsupported_ops(model)
    if missing:
        raise ModelImportError(f"unsupported ONNX op(s): {', '.join(missing)}",
                               hint="re-export with opset <= 17 or simpler ops")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = onnx2torch.convert(model)
    except NotImplementedError as exc:
        raise ModelImportError(f"onnx2torch cannot convert this model: {exc}") from exc
    except Exception as exc:
        raise ModelImportError(f"ONNX conversion failed ({type(exc).__name__}: {exc})") from exc
    return module.eval()


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


_CLASS_NAME_KEYS = ("classes", "class_names", "labels")


def _class_names_key(meta: dict[str, str]) -> str | None:
    return next((k for k in _CLASS_NAME_KEYS if k in meta), None)


def _class_names(meta: dict[str, str]) -> list[str] | None:
    """Class names from metadata (``classes``/``labels``: JSON list or comma/newline separated)."""
    import json

    for key in _CLASS_NAME_KEYS:
        if key in meta:
            raw = meta[key].strip()
            try:
                val = json.loads(raw)
                if isinstance(val, list):
                    return [str(v) for v in val]
            except json.JSONDecodeError:
                pass
            sep = "\n" if "\n" in raw else ","
            return [s.strip() for s in raw.split(sep) if s.strip()]
    return None


_SOFTMAX_OPS = ("Softmax", "LogSoftmax")


def ends_in_softmax(model: onnx.ModelProto) -> str | None:
    """The Softmax/LogSoftmax op that produces the first output, looking through Identity nodes."""
    producers = {o: n for n in model.graph.node for o in n.output}
    name = model.graph.output[0].name if model.graph.output else ""
    for _ in range(4):  # a few Identity hops at most; exporters add one, not chains
        node = producers.get(name)
        if node is None:
            return None
        if node.op_type in _SOFTMAX_OPS:
            return node.op_type
        if node.op_type != "Identity":
            return None
        name = node.input[0]
    return None


def conversion_notes(model: onnx.ModelProto, spec: InputSpec, class_names_key: str | None
                     ) -> list[str]:
    """Sentences for the conversions the scanner applies around the graph (not inside it)."""
    notes = []
    if spec.layout == "NHWC":
        how = ("as --layout says" if spec.sources.get("layout") == "flag"
               else "as guessed from its input shape")
        notes.append(
            f"The model takes channels-last (NHWC) images {how}; the scanner transposes its NCHW "
            "images before every call. If the guess is wrong, clean accuracy is low and the scan "
            "is refused: pass --layout NCHW.")
    op = ends_in_softmax(model)
    if op is not None:
        notes.append(
            f"The model outputs probabilities (its graph ends in {op}): detection and repair use "
            f"the logits before the {op}, and a repaired export keeps it. Nothing is lost, but "
            "scores are on the logit scale, not the probabilities the model returns.")
    if class_names_key is not None:
        notes.append(
            f"Class names come from the model's metadata key {class_names_key!r}; trusted class "
            "folders without a labels file are matched to them by name, so a wrong list there "
            "gives a wrong class map.")
    return notes


def load_onnx(path: Path, spec_overrides: dict | None = None, check: bool = True,
              device: torch.device | None = None) -> LoadedModel:
    """Import an ONNX classifier; verifies parity with onnxruntime unless ``check`` is False."""
    path = Path(path)
    raw = read_onnx(path)
    if not raw.graph.input:
        raise InputError(f"{path.name}: the graph has no inputs")
    meta = _metadata(raw)
    spec = infer_spec(raw, spec_overrides)
    normalized, report = normalize(raw)
    loaded_unsupported = unsupported_ops(normalized)
    module = convert(normalized)
    n_classes = _num_classes(raw)
    names = _class_names(meta)
    loaded = LoadedModel(
        net=module, spec=spec, source=path,
        sha256=sha256_file(path, external_data_files(path)), format="onnx",
        num_classes=n_classes or 0, class_names=names,
        op_histogram=op_histogram(raw), unsupported_ops=loaded_unsupported,
        import_notes=[*report.changes,
                      *conversion_notes(raw, spec, _class_names_key(meta) if names else None)],
        has_batchnorm=any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()),
        metadata=meta, onnx_opset=default_opset(raw))
    loaded.extra["normalized_onnx"] = normalized
    if check:
        parity = check_parity(onnx_session(path, device), module, spec)
        loaded.parity = parity
        if not parity.passed:
            raise parity_error(parity)
    if not loaded.num_classes:
        with torch.no_grad():
            loaded.num_classes = int(module(torch.from_numpy(random_model_inputs(spec, 1))).shape[-1])
    return loaded
