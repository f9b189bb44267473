"""Microbenchmark: one trigger-inversion step in each precision and layout, side by side.

    python -m scanner.eval.bench_precision [--model fixtures/models/resnet20_clean.onnx]

The step is what dominates a CTI scan on CPU: two copies of the model (pivot and tuned), forward
and input gradient on 10 classes x 32 images. Prints seconds per step for float32/bf16 x NCHW/
channels_last, measured in one run (interleaved, twice each), and the ratio to float32 NCHW.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _step_seconds(model, x: torch.Tensor, precision: str, repeats: int) -> float:
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


def main(argv: list[str] | None = None) -> int:
    from scanner.classifier import SplitClassifier
    from scanner.io.loader import load_model
    from scanner.ops.precision import native_bf16, to_fast_layout

    ap = argparse.ArgumentParser(prog="python -m scanner.eval.bench_precision", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "fixtures" / "models" / "resnet20_clean.onnx"))
    ap.add_argument("--rows", type=int, default=320, help="images per step (classes x batch)")
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nchw = SplitClassifier.from_loaded(load_model(args.model)).eval()
    for p in nchw.parameters():
        p.requires_grad_(False)
    x = torch.rand(args.rows, *nchw.spec.shape_chw)
    fast = copy.deepcopy(nchw)
    if not to_fast_layout(fast, x[:8]):
        print("the model cannot run channels_last; comparing precisions only", file=sys.stderr)
    print(f"{Path(args.model).name}, {args.rows} rows, {args.threads} thread(s), native bf16: "
          f"{native_bf16(torch.device('cpu'))}")
    cases = [("fp32", "NCHW", nchw), ("fp32", "channels_last", fast), ("bf16", "NCHW", nchw),
             ("bf16", "channels_last", fast)]
    secs = {(p, lay): [] for p, lay, _ in cases}
    for _ in range(2):  # interleaved, so that load drifts hit every case alike
        for p, lay, m in cases:
            secs[(p, lay)].append(_step_seconds(m, x, p, args.repeats))
    base = sum(secs[("fp32", "NCHW")]) / 2
    for (p, lay), s in secs.items():
        mean = sum(s) / len(s)
        print(f"{p:5s} {lay:14s} {mean:.3f} s/step  ({base / mean:.2f}x of fp32 NCHW)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
