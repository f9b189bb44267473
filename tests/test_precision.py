"""The compute settings of a scan: bf16 loops that still see their own updates, float32
measurements, and a channels_last layout that changes nothing but speed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scanner.classifier import predict
from scanner.detectors.inversion import TriggerSet, trigger_success
from scanner.ops.precision import (Compute, exact, native_bf16, resolve_precision,
                                   to_fast_layout, to_standard_layout)

CPU = torch.device("cpu")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


def test_resolve_precision():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("auto", CPU) == ("bf16" if native_bf16(CPU) else "fp32")
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"  # not measured on CUDA
    assert resolve_precision("auto", "cpu") == resolve_precision("auto", CPU)  # str devices too
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp16", CPU)


def test_bf16_loops_see_in_place_weight_updates():
    """The trap: autocast's weight cache inside one long context serves the pre-update bf16
    weights, so a fine-tune trains on frozen weights. An in-place update must show."""
    net = _net()
    x = torch.rand(2, 3, 8, 8)
    with Compute(CPU, "bf16").loops():
        before = net(x).float()
        with torch.no_grad():
            net[4].weight.add_(1.0)
        after = net(x).float()
        assert after.dtype == torch.float32
        assert net[4](torch.ones(1, 4)).dtype == torch.bfloat16  # the loop does run in bf16
    assert not torch.allclose(before, after)
    assert torch.allclose(after, net(x), atol=0.05)  # and what it sees is today's weights


def test_measurements_are_float32_inside_bf16_loops():
    """Accuracy (``predict``) and trigger success decide verdicts: float32 inside bf16 loops."""
    net = _net()
    seen: list[torch.dtype] = []
    net[4].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    x = torch.rand(6, 3, 8, 8)
    triggers = TriggerSet([0, 2], "mask", mask=torch.rand(2, 1, 8, 8),
                          pattern=torch.rand(2, 3, 8, 8))
    with Compute(CPU, "bf16").loops():
        net(x)
        assert seen == [torch.bfloat16]  # the hook does see bf16 where the loop computes
        seen.clear()
        with exact(CPU):
            net(x)
        predict(net, x)
        trigger_success(net, triggers, x, torch.tensor([0, 1, 2, 1, 0, 2]))
    assert seen and set(seen) == {torch.float32}


def test_fp32_loops_change_nothing():
    net = _net()
    with Compute(CPU, "fp32").loops():
        assert net[4](torch.ones(1, 4)).dtype == torch.float32


def test_fast_layout_keeps_outputs_and_round_trips():
    net = _net()
    x = torch.rand(4, 3, 8, 8)
    ref = net(x)
    assert to_fast_layout(net, x)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(net(x), ref, atol=1e-5)
    to_standard_layout(net)
    assert net[0].weight.is_contiguous()


class _ViewsConvOutput(nn.Module):
    """A graph that ``view``s a conv output: it cannot run in channels_last."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y.view(y.shape[0], -1)[:, :3]


def test_fast_layout_is_undone_where_the_graph_cannot_take_it():
    net = _ViewsConvOutput()
    x = torch.rand(2, 3, 6, 6)
    ref = net(x)
    assert not to_fast_layout(net, x)
    assert net.conv.weight.is_contiguous()
    assert torch.equal(net(x), ref)
