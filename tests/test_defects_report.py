"""Report defects a new user hit: hidden conversions, an empty column, sentence case, triggers."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from rich.console import Console

from scanner.scan.request import ScanRequest
from scanner.scan.results import InspectResult, RepairJobResult, ScanResult
from scanner.report.findings import findings
from scanner.report.html import to_html
from scanner.report.images import example_pngs
from scanner.report.markdown import to_markdown
from scanner.report.sarif import to_sarif
from scanner.report.terminal import render_inspect, render_repair, render_scan
from scanner.report.writer import write_reports

DATA = Path(__file__).parent / "data"
MODEL_NOTE = "The model takes channels-last (NHWC) images as guessed from its input shape."
DATA_NOTE = "Converted 3 image(s) from grayscale to RGB: a model trained on colour sees no colour."


def _console() -> Console:
    return Console(file=io.StringIO(), width=200, color_system=None)


def _text(console: Console) -> str:
    return console.file.getvalue()


def _doc() -> dict:
    return json.loads((DATA / "scan_backdoor.json").read_text())


def _scan(asr_tuned=None) -> ScanResult:
    d = _doc()
    d["model"]["import_notes"] = [MODEL_NOTE]
    d["trusted"]["notes"] = [DATA_NOTE]
    d["detection"]["per_class"] = [{**r, "asr_tuned": asr_tuned if r["cls"] == 1 else None}
                                   for r in d["detection"]["per_class"]]
    return ScanResult(d["verdict"], d["reasons"], d["model"], d["trusted"], ScanRequest(),
                      detection=d["detection"])


# --------------------------------------------------------------------------- terminal

def test_scan_prints_model_and_data_notes():
    c = _console()
    render_scan(_scan(), c)
    out = _text(c)
    assert f"model: {MODEL_NOTE}" in out and f"data: {DATA_NOTE}" in out


def test_repair_prints_model_and_data_notes():
    s = _scan()
    res = RepairJobResult("inconclusive", ["clean accuracy too low"], s.model, s.trusted,
                          s.request, "pivotal")
    c = _console()
    render_repair(res, c)
    out = _text(c)
    assert f"model: {MODEL_NOTE}" in out and f"data: {DATA_NOTE}" in out


def test_inspect_prints_model_and_data_notes():
    s = _scan()
    res = InspectResult(model="m.onnx", format="onnx", sha256="ab" * 32, num_classes=10,
                        spec=s.model["spec"], op_histogram={}, unsupported_ops=[],
                        import_notes=[MODEL_NOTE], parity=None, has_batchnorm=False,
                        onnx_opset=17, arch=None, class_names=None,
                        trusted={"source": "d", "images": 30, "class_counts": {},
                                 "notes": [DATA_NOTE], "clean_accuracy": 0.9,
                                 "class_names": None})
    c = _console()
    render_inspect(res, c)
    out = _text(c)
    assert MODEL_NOTE in out and DATA_NOTE in out


def _header_line(out: str) -> str:
    return next(ln for ln in out.splitlines() if "ASR suspect" in ln)


def test_asr_repaired_column_only_when_some_class_has_a_value():
    c = _console()
    render_scan(_scan(asr_tuned=None), c)  # mask: no repair, every value None
    assert "ASR repaired" not in _header_line(_text(c))
    c = _console()
    render_scan(_scan(asr_tuned=0.12), c)
    out = _text(c)
    assert "ASR repaired" in _header_line(out)
    assert re.search(r"1 automobile .*0\.12", out)


# --------------------------------------------------------------------------- BDS003 text

def _inconclusive_canary() -> dict:
    d = _doc()
    d.update(verdict="inconclusive",
             reasons=["the sensitivity canary was not detected: this scan's budget is too weak"])
    d["canary"] = {"target": 4, "implant_asr": 0.97, "implant_cda": 0.8, "implanted": True,
                   "notes": [], "model_score": 1.2, "top_class": 9, "detected": False}
    return d


def test_bds003_message_is_two_proper_sentences():
    (f,) = findings(_inconclusive_canary())
    assert f.rule.id == "BDS003"
    assert ". The sensitivity canary was not detected" in f.message
    assert not re.search(r"\. [a-z]", f.message), f.message
    sarif = to_sarif(_inconclusive_canary(), "m.onnx")["runs"][0]["results"][0]["message"]["text"]
    assert sarif == f.message
    assert ". The sensitivity canary was not detected" in to_markdown(_inconclusive_canary())


def test_reasons_starting_with_an_identifier_keep_their_case():
    d = _inconclusive_canary()
    d["reasons"] = ["mask_outlier scores diverged"]
    assert "mask_outlier scores diverged." in findings(d)[0].message


# --------------------------------------------------------------------------- HTML examples

def _examples() -> list[dict]:
    """Class 1's trigger flips a cat to "automobile"; class 7's leaves it a cat."""
    g = torch.Generator().manual_seed(0)
    out = []
    for cls, after in ((1, 1), (7, 3)):
        before = torch.rand(3, 32, 32, generator=g)
        stamped = before.clone()
        stamped[:, 26:30, 26:30] = 1.0
        out.append({"class": cls, "before": before, "after": stamped, "pred_before": 3,
                    "pred_after": after})
    return out


def _imgs(page: str) -> list[tuple[str, Image.Image]]:
    """(alt text, decoded PNG) for every embedded image."""
    found = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)"', page)
    return [(alt, Image.open(io.BytesIO(base64.b64decode(b64)))) for b64, alt in found]


def test_html_shows_trigger_examples_before_and_after_with_predictions():
    page = to_html(_doc(), None, example_pngs(_examples()))
    imgs = _imgs(page)
    assert len(imgs) == 4
    befores = [im for alt, im in imgs if "without the trigger" in alt]
    afters = [(alt, im) for alt, im in imgs if "with the reversed trigger" in alt]
    assert len(befores) == 2 and len(afters) == 2
    assert "class 1 automobile" in afters[0][0] and "class 7 horse" in afters[1][0]
    assert all(im.size == (128, 128) for _, im in imgs)  # 32x32 upscaled 4x
    # nearest-neighbour: each source pixel is a flat 4x4 block
    im = befores[0].convert("RGB")
    assert len({im.getpixel((x, y)) for x in range(4) for y in range(4)}) == 1
    assert "image-rendering:pixelated" in page
    assert "before: <b>3 cat</b>" in page
    assert "with trigger: <b>1 automobile</b>" in page and "with trigger: <b>3 cat</b>" in page
    assert "Reversed triggers on a trusted image" in page
    assert page.count('class="trigger flagged"') == 1  # class 1 is flagged in the fixture


def test_html_without_examples_keeps_the_bare_triggers():
    from scanner.report.html import to_html as render

    png = example_pngs(_examples())[1].after
    page = render(_doc(), {1: png})
    assert "Reversed triggers on a trusted image" not in page and "before:" not in page
    assert 'alt="reversed trigger for class 1 automobile"' in page


def test_write_reports_writes_example_pngs_and_embeds_them(tmp_path):
    from test_reports import triggers

    written = write_reports(_doc(), tmp_path, triggers=triggers(), examples=_examples(),
                            formats=("html", "json"))
    for cls in (1, 7):
        for side in ("before", "after"):
            path = tmp_path / "triggers" / f"class_{cls}_{side}.png"
            assert written[f"example_{cls}_{side}"] == path
            assert Image.open(path).size == (128, 128)
        assert (tmp_path / "triggers" / f"class_{cls}.png").is_file()
    page = (tmp_path / "report.html").read_text()
    after = base64.b64encode((tmp_path / "triggers" / "class_1_after.png").read_bytes()).decode()
    assert after in page
    assert "with trigger: <b>1 automobile</b>" in page


@pytest.mark.parametrize("side,scale", [(28, 5), (32, 4), (224, 1)])
def test_examples_are_upscaled_to_a_visible_size(side, scale):
    ex = {"class": 0, "before": torch.rand(1, side, side), "after": torch.rand(1, side, side),
          "pred_before": 0, "pred_after": 0}
    im = Image.open(io.BytesIO(example_pngs([ex])[0].before))
    assert im.size == (side * scale, side * scale) and im.mode == "L"
