"""Microbenchmark (``scan eval bench-precision``): one trigger-inversion step in each precision
and layout, side by side.

The step is what dominates a CTI scan on CPU: two copies of the model (pivot and tuned), forward
and input gradient on 10 classes x 32 images. Prints seconds per step for float32/bf16 x NCHW/
channels_last, measured in one run (interleaved, twice each), and the ratio to float32 NCHW.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import torch

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "resnet20_clean.onnx"


def step_seconds(model, x: torch.Tensor, precision: str, repeats: int) -> float:
    """Mean seconds of one forward + input-gradient step of two model copies (after a warm-up)."""
    from scanner.ops.precision import Compute

    x = x.clone().requires_grad_(True)
    times = []
    for i in range(repeats + 1):  # the first step warms oneDNN's kernel cache up
        t = time.perf_counter()
        with Compute(torch.device("cpu"), precision).loops():
            a, b = model(x), model(x)
        (a.float().logsumexp(1).sum() + b.float().sum()).backward()
        if i:
            times.append(time.perf_counter() - t)
    return sum(times) / len(times)


def bench_precision(model_path: str | Path, rows: int, repeats: int, threads: int,
                    echo: Callable[[str], None], warn: Callable[[str], None]) -> None:
    """Measure the four (precision, layout) cases and ``echo`` one line per case."""
    from scanner.classifier import SplitClassifier
    from scanner.io.loader import load_model
    from scanner.ops.precision import native_bf16, to_fast_layout

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nchw = SplitClassifier.from_loaded(load_model(model_path)).eval()
    for p in nchw.parameters():
        p.requires_grad_(False)
    x = torch.rand(rows, *nchw.spec.shape_chw)
    fast = copy.deepcopy(nchw)
    if not to_fast_layout(fast, x[:8]):
        warn("the model cannot run channels_last; comparing precisions only")
    echo(f"{Path(model_path).name}, {rows} rows, {threads} thread(s), native bf16: "
         f"{native_bf16(torch.device('cpu'))}")
    cases = [("fp32", "NCHW", nchw), ("fp32", "channels_last", fast), ("bf16", "NCHW", nchw),
             ("bf16", "channels_last", fast)]
    secs: dict[tuple[str, str], list[float]] = {(p, lay): [] for p, lay, _ in cases}
    for _ in range(2):  # interleaved, so that load drifts hit every case alike
        for p, lay, m in cases:
            secs[(p, lay)].append(step_seconds(m, x, p, repeats))
    base = sum(secs[("fp32", "NCHW")]) / 2
    for (p, lay), s in secs.items():
        mean = sum(s) / len(s)
        echo(f"{p:5s} {lay:14s} {mean:.3f} s/step  ({base / mean:.2f}x of fp32 NCHW)")
