"""Normalisation pass that makes real-world ONNX files convert with onnx2torch.

Why: exporters disagree. The TorchScript exporter hides initializers behind Identity/Constant
nodes, torch's dynamo exporter writes opset 18-20 (onnx2torch stops at 17) and Reshape with
``allowzero=1``, and many files in the wild are exported with a fixed batch size of 1. Each fix is a
small pure function on a ``ModelProto`` that returns what it changed, so ``scan inspect`` can show it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from scanner.errors import ModelImportError

MAX_OPSET = 17  # highest opset onnx2torch 1.5 registers converters for
BATCH_DIM_NAME = "batch"


@dataclass
class NormalizeReport:
    """What the pass changed (shown by ``scan inspect`` and carried into reports)."""

    changes: list[str] = field(default_factory=list)
    original_opset: int = 0
    fixed_batch: int | None = None

    def add(self, msg: str) -> None:
        self.changes.append(msg)


def default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 0


def _initializer_names(graph: onnx.GraphProto) -> set[str]:
    return {t.name for t in graph.initializer}


def _constant_to_array(node: onnx.NodeProto) -> np.ndarray | None:
    """Value of a Constant node, or None when it uses a form we do not fold (e.g. sparse)."""
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
    return None


def fold_constants_and_identities(model: onnx.ModelProto, report: NormalizeReport) -> None:
    """Turn Constant nodes into initializers and bypass Identity nodes (in place)."""
    g = model.graph
    graph_outputs = {o.name for o in g.output}
    inits = _initializer_names(g)
    keep: list[onnx.NodeProto] = []
    rename: dict[str, str] = {}
    n_const = n_ident = 0
    for node in g.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        if node.op_type == "Constant" and node.output[0] not in graph_outputs:
            arr = _constant_to_array(node)
            if arr is not None:
                g.initializer.append(numpy_helper.from_array(arr, node.output[0]))
                inits.add(node.output[0])
                n_const += 1
                continue
        if node.op_type == "Identity" and node.output[0] not in graph_outputs:
            src = node.input[0]
            if src in inits:
                arr = numpy_helper.to_array(next(t for t in g.initializer if t.name == src))
                g.initializer.append(numpy_helper.from_array(arr, node.output[0]))
                inits.add(node.output[0])
            else:
                rename[node.output[0]] = src
            n_ident += 1
            continue
        keep.append(node)
    if n_const or n_ident:
        del g.node[:]
        g.node.extend(keep)
        for o in g.output:  # outputs may reference renamed tensors only via kept nodes
            o.name = rename.get(o.name, o.name)
        report.add(f"Folded {n_const} Constant and {n_ident} Identity node(s) into initializers "
                   "so that onnx2torch can convert the graph; the computation is unchanged.")
    _drop_initializers_from_inputs(model)


def _drop_initializers_from_inputs(model: onnx.ModelProto) -> None:
    """Old exporters (IR < 4) list initializers as graph inputs too; keep only real inputs."""
    inits = _initializer_names(model.graph)
    real = [i for i in model.graph.input if i.name not in inits]
    if len(real) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(real)


def downconvert_opset(model: onnx.ModelProto, report: NormalizeReport,
                      target: int = MAX_OPSET) -> onnx.ModelProto:
    """Convert to ``target`` opset when the file is newer than onnx2torch supports."""
    opset = default_opset(model)
    if opset <= target:
        return model
    try:
        from onnx import version_converter

        converted = version_converter.convert_version(model, target)
    except Exception as exc:  # the converter raises plain RuntimeError/ValueError per op
        raise ModelImportError(
            f"cannot down-convert ONNX opset {opset} to {target}: {exc}",
            hint="re-export the model with opset_version<=17") from exc
    report.add(f"Down-converted ONNX opset {opset} -> {target} (the newest onnx2torch "
               "converts); the parity check against onnxruntime on the original file verifies "
               "that the numbers did not change.")
    return converted


def fix_reshape_allowzero(model: onnx.ModelProto, report: NormalizeReport) -> None:
    """Drop ``allowzero=1`` where the shape has no zero (then it means exactly the same)."""
    inits = {t.name: t for t in model.graph.initializer}
    n = 0
    for node in model.graph.node:
        if node.op_type != "Reshape":
            continue
        attrs = [a for a in node.attribute if a.name == "allowzero" and a.i == 1]
        if not attrs:
            continue
        shape = inits.get(node.input[1])
        if shape is None or np.any(numpy_helper.to_array(shape) == 0):
            raise ModelImportError(
                f"Reshape node {node.name!r} uses allowzero=1 with a shape that is not a constant "
                "free of zeros; onnx2torch cannot convert it")
        node.attribute.remove(attrs[0])
        n += 1
    if n:
        report.add(f"Removed allowzero=1 from {n} Reshape node(s) whose shapes contain no zero, "
                   "where it means exactly the same; the computation is unchanged.")


def make_batch_dynamic(model: onnx.ModelProto, report: NormalizeReport) -> None:
    """Make a fixed batch dimension symbolic, rewriting Reshape shape constants that bake it in.

    A Reshape whose constant target shape starts with the fixed batch size ``B`` and whose input
    has ``B`` rows gets ``0`` there instead ("copy the input's dimension"), which is what the
    exporter meant when it traced with batch ``B``.
    """
    g = model.graph
    if not g.input:
        return
    dim0 = g.input[0].type.tensor_type.shape.dim
    if not dim0 or not dim0[0].HasField("dim_value"):
        return
    batch = int(dim0[0].dim_value)
    report.fixed_batch = batch
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        shapes = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.input)}
    except Exception:
        shapes = {}
    inits = {t.name: t for t in g.initializer}
    n = 0
    for node in g.node:
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        arr = numpy_helper.to_array(inits[node.input[1]]).copy()
        if arr.ndim != 1 or len(arr) == 0 or arr[0] != batch:
            continue
        vi = shapes.get(node.input[0])
        if vi is not None:
            d = vi.type.tensor_type.shape.dim
            if d and d[0].HasField("dim_value") and d[0].dim_value != batch:
                continue
        arr[0] = 0
        new_name = f"{node.input[1]}__dynbatch_{n}"
        g.initializer.append(numpy_helper.from_array(arr.astype(np.int64), new_name))
        node.input[1] = new_name
        n += 1
    for vi in list(g.input[:1]) + list(g.output):
        d = vi.type.tensor_type.shape.dim
        if d and d[0].HasField("dim_value") and d[0].dim_value == batch:
            d[0].Clear()
            d[0].dim_param = BATCH_DIM_NAME
    del g.value_info[:]  # stale static shapes would contradict the dynamic batch
    report.add(f"The model was exported with a fixed batch size {batch}; the batch dimension "
               f"was made dynamic ({n} Reshape constant(s) rewritten) so the scanner can run "
               "larger batches. A batch size baked in elsewhere would break this, which the "
               "parity check at a larger batch catches.")


def normalize(model: onnx.ModelProto) -> tuple[onnx.ModelProto, NormalizeReport]:
    """Return a normalised copy of ``model`` and the list of changes made."""
    report = NormalizeReport(original_opset=default_opset(model))
    m = copy.deepcopy(model)
    fold_constants_and_identities(m, report)
    m = downconvert_opset(m, report)
    fold_constants_and_identities(m, report)  # the converter may introduce Constant nodes
    fix_reshape_allowzero(m, report)
    make_batch_dynamic(m, report)
    return m, report


def set_opset(model: onnx.ModelProto, version: int) -> None:
    """Helper for tests and exporters: force the default-domain opset entry."""
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = version
            return
    model.opset_import.append(helper.make_opsetid("", version))
