"""The canary benchmark's summary counts what the issue asks: taken, and within 5 points."""

from __future__ import annotations

from scanner.lab.bench_canary import summary_lines


def _row(name, ok, before, after):
    return {"model": name, "ok": ok, "steps": 100, "backoffs": 0, "held_cda_before": before,
            "held_cda_after": after, "cda_before": before, "cda_after": after, "asr": 0.97,
            "wall_s": 3.0}


def test_summary_counts_models_within_the_drop():
    rows = [_row("a.onnx", True, 0.80, 0.78), _row("b.onnx", True, 0.80, 0.75),
            _row("c.onnx", False, 0.80, 0.40)]
    lines = summary_lines(rows)
    assert "a.onnx" in lines[0] and "-2.0" in lines[0] and "NO" in lines[0]
    # a drop of exactly 5 points counts as within; 40 points does not
    assert lines[-1] == ("implant taken on 2/3 models; test accuracy within 5 points on 2/3; "
                         "largest drop 40.0 points")
