"""InputSpec: what a model expects as input, and the module that maps our images onto it.

Internally every image is float32 NCHW RGB in [0, 1]. :class:`Preprocess` turns that into what
the model wants (value range, mean/std when not baked into the graph, NHWC layout), so detectors
and defenses never think about preprocessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from scanner.errors import InputError


@dataclass
class InputSpec:
    """The input contract of one model.

    ``mean``/``std`` are applied by the scanner (flags/config); ``graph_mean``/``graph_std`` are
    what was found baked into the graph and are reported only.
    """

    layout: str = "NCHW"
    channels: int = 3
    height: int = 32
    width: int = 32
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    graph_mean: tuple[float, ...] | None = None
    graph_std: tuple[float, ...] | None = None
    input_name: str = "input"
    output_name: str = "logits"
    fixed_batch: int | None = None
    dtype: str = "float32"
    sources: dict[str, str] = field(default_factory=dict)  # field -> "graph" | "flag" | "default"

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise InputError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None and len(v) not in (1, self.channels):
                raise InputError(f"--{name} needs 1 or {self.channels} values, got {len(v)}")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise InputError("--std values must be positive")
        lo, hi = self.value_range
        if not hi > lo:
            raise InputError(f"value range must have max > min, got {self.value_range}")

    @property
    def shape_chw(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def model_input_shape(self, batch: int) -> tuple[int, ...]:
        if self.layout == "NCHW":
            return (batch, self.channels, self.height, self.width)
        return (batch, self.height, self.width, self.channels)

    def to_dict(self) -> dict:
        return asdict(self)


class Preprocess(nn.Module):
    """[0,1] NCHW images -> the model's input (range, normalisation, layout). Differentiable."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        lo, hi = spec.value_range
        c = spec.channels
        mean = torch.tensor(spec.mean if spec.mean is not None else (0.0,), dtype=torch.float32)
        std = torch.tensor(spec.std if spec.std is not None else (1.0,), dtype=torch.float32)
        self.register_buffer("mean", mean.expand(c).reshape(1, c, 1, 1).clone(), persistent=False)
        self.register_buffer("std", std.expand(c).reshape(1, c, 1, 1).clone(), persistent=False)
        self.lo, self.scale = float(lo), float(hi - lo)
        self.nhwc = spec.layout == "NHWC"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x * self.scale + self.lo - self.mean) / self.std
        return x.permute(0, 2, 3, 1) if self.nhwc else x


def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """Parse ``"0.5,0.5,0.5"`` from a flag; clear error on junk."""
    if text is None or text == "":
        return None
    try:
        return tuple(float(t) for t in text.replace(" ", "").split(","))
    except ValueError:
        raise InputError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def parse_value_range(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    parts = parse_floats(text.replace(":", ",").replace("-", ",", 1) if "," not in text else text,
                         "--value-range")
    if parts is None or len(parts) != 2:
        raise InputError(f"--value-range: expected MIN,MAX (e.g. 0,1 or 0,255), got {text!r}")
    return (parts[0], parts[1])
