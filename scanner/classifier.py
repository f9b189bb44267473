"""SplitClassifier: one imported model seen as preprocess -> features E -> head M -> logits.

Why one object: defenses clone it (pivot vs tuned), detectors need logits on [0,1] images, and
the export needs the original ``net`` with the repaired weights. E, M and ``net`` share parameters,
and ``copy.deepcopy`` keeps that sharing inside the copy.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from scanner.io.model_file import LoadedModel
from scanner.io.spec import InputSpec, Preprocess
from scanner.io.split import split_features, verify_split


class SplitClassifier(nn.Module):
    """[0,1] NCHW images -> logits, with ``features`` and ``head`` exposed."""

    def __init__(self, net: nn.Module, spec: InputSpec, check: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.pre = Preprocess(spec)
        split = split_features(net)
        if check:
            with torch.no_grad():
                verify_split(net, split, self.pre(torch.rand(2, *spec.shape_chw)))
        self.net = net
        self.feature_net = split.features
        self.head = split.head
        self.outputs_probabilities = split.outputs_probabilities

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> "SplitClassifier":
        return cls(loaded.net, loaded.spec)

    def features(self, x: Tensor) -> Tensor:
        return self.feature_net(self.pre(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def clone(self) -> "SplitClassifier":
        return copy.deepcopy(self)

    def has_batchnorm(self) -> bool:
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules())

    def set_bn_eval(self) -> None:
        """Keep BatchNorm running statistics frozen while the rest trains (small trusted batches)."""
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """Arg-max predictions in eval mode, batched, on the model's device (CPU for a model
    without parameters); the model's mode is restored afterwards.

    Always float32, even inside a scan's bf16 loops: accuracy decides which repaired state is
    kept and whether a scan is judged at all (scanner.ops.precision). The one ``predict`` of the
    package: the trainer's CDA/ASR and the lab's meters call it too.
    """
    from scanner.ops.precision import exact

    was_training = model.training
    model.eval()
    first = next(iter(model.parameters()), None)
    dev = first.device if first is not None else torch.device("cpu")
    try:
        with exact(dev):
            out = torch.cat([model(x[i:i + batch_size].to(dev)).argmax(-1).cpu()
                             for i in range(0, len(x), batch_size)]) if len(x) else torch.empty(0, dtype=torch.long)
    finally:
        model.train(was_training)
    return out
