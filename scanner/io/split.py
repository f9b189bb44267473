"""Split a classifier into penultimate features E(x) and head M by fx graph surgery.

Why generic: imported ONNX models are ``torch.fx.GraphModule`` objects with arbitrary node names;
Pivotal Tuning and CTI need E and M for any of them. The head is the sub-graph from the input of
the last Linear/Gemm/MatMul to the logits; a trailing Softmax (probability outputs) is looked through.
E and M share parameters with the original module, so training them trains it.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from scanner.errors import ModelImportError

_LINEAR_FUNCS = {torch.nn.functional.linear, torch.matmul, operator.matmul, torch.addmm,
                 torch.mm}
_SOFTMAX_NAMES = ("softmax", "logsoftmax", "log_softmax")


@dataclass
class FeatureSplit:
    features: nn.Module  # x -> E(x), shape (N, D)
    head: nn.Module  # E(x) -> logits
    outputs_probabilities: bool  # the original model ends in a Softmax
    feature_dim: int | None = None


def _is_linear_node(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        mod = gm.get_submodule(str(node.target))
        name = type(mod).__name__.lower()
        return isinstance(mod, nn.Linear) or name in ("onnxgemm", "onnxmatmul")
    if node.op == "call_function":
        return node.target in _LINEAR_FUNCS
    return False


def _is_softmax(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        mod = gm.get_submodule(str(node.target))
        return isinstance(mod, (nn.Softmax, nn.LogSoftmax)) or any(
            s in type(mod).__name__.lower() for s in _SOFTMAX_NAMES)
    if node.op in ("call_function", "call_method"):
        return any(s in getattr(node.target, "__name__", str(node.target)).lower()
                   for s in _SOFTMAX_NAMES)
    return False


def _data_input(node: fx.Node) -> fx.Node:
    if node.op == "call_function" and node.target is torch.addmm:
        return node.args[1]
    return node.args[0]


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        for a in n.all_input_nodes:
            if a not in seen:
                seen.add(a)
                stack.append(a)
    return seen


def to_graph_module(model: nn.Module) -> fx.GraphModule:
    if isinstance(model, fx.GraphModule):
        return model
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:
        raise ModelImportError(f"cannot trace {type(model).__name__} with torch.fx: {exc}") from exc


def split_features(model: nn.Module) -> FeatureSplit:
    """Locate the final linear layer and return E and M as modules sharing ``model``'s weights."""
    gm = to_graph_module(model)
    nodes = list(gm.graph.nodes)
    out_node = next(n for n in nodes if n.op == "output")
    logits = out_node.args[0]
    if isinstance(logits, (tuple, list)):
        if len(logits) != 1:
            raise ModelImportError(f"model has {len(logits)} outputs; expected one logits tensor")
        logits = logits[0]
    probs = False
    if _is_softmax(logits, gm):
        probs, logits = True, logits.args[0]
    # Walk back from the logits through single-input nodes to the last linear layer.
    cur, linear = logits, None
    for _ in range(8):
        if _is_linear_node(cur, gm):
            linear = cur
            break
        data_inputs = [a for a in cur.all_input_nodes if a.op != "get_attr"]
        if len(data_inputs) != 1:
            break
        cur = data_inputs[0]
    if linear is None:
        raise ModelImportError(
            "could not find the final Linear/Gemm layer feeding the logits",
            hint="the scanner needs a classifier ending in a fully connected layer")
    feat = _data_input(linear)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    head_nodes = [n for n in nodes if n in _ancestors(logits) | {logits}
                  and n not in _ancestors(feat) | {feat}]
    if any(n.op == "placeholder" for n in head_nodes):
        raise ModelImportError("the final layer depends on the raw input; cannot split features")

    # Features graph: everything up to ``feat``.
    fg = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in nodes:
        if n.op == "output":
            break
        env[n] = fg.node_copy(n, lambda a: env[a])
        if n is feat:
            break
    fg.output(env[feat])
    features = fx.GraphModule(gm, fg)
    features.graph.eliminate_dead_code()
    features.recompile()

    # Head graph: a placeholder for the features, then the nodes from the linear layer on.
    hg = fx.Graph()
    henv: dict[fx.Node, fx.Node] = {feat: hg.placeholder("features")}
    for n in nodes:
        if n in head_nodes:
            henv[n] = hg.node_copy(n, lambda a: henv[a])
    hg.output(henv[logits])
    head = fx.GraphModule(gm, hg)
    head.recompile()
    del placeholders
    return FeatureSplit(features=features, head=head, outputs_probabilities=probs)


def verify_split(model: nn.Module, split: FeatureSplit, x: torch.Tensor,
                 atol: float = 1e-5) -> float:
    """Max |M(E(x)) - model(x)| (on logits; softmax applied when the model outputs probabilities)."""
    with torch.no_grad():
        ref = model(x)
        feats = split.features(x)
        if feats.dim() != 2:
            raise ModelImportError(f"penultimate features have shape {tuple(feats.shape)}; expected (N, D)")
        out = split.head(feats)
        if split.outputs_probabilities:
            out = torch.softmax(out, dim=-1)
        err = float((out - ref).abs().max())
    if not bool(torch.isfinite(ref).all()):  # NaN compares false below and would pass the check
        raise ModelImportError("the model itself produces non-finite outputs (NaN or inf) on "
                               "random inputs in its value range; no scan can judge it")
    scale = max(1.0, float(ref.abs().max()))
    if err > atol * scale * 10:
        raise ModelImportError(f"feature/head split changed the output (max |delta| = {err:.3g})")
    split.feature_dim = int(feats.shape[1])
    return err
