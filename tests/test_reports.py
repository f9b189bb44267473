"""Report formats: every format is parsed back and its content checked, not just its existence.

The fixture is a real ``ScanResult.to_dict()`` of a backdoored ResNet-8 (tests/data); the pass and
inconclusive variants are derived here so each verdict's rendering is pinned down.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageStat

from scanner.detectors.inversion import TriggerSet
from scanner.report.html import to_html
from scanner.report.images import trigger_pngs
from scanner.report.junit import to_junit
from scanner.report.markdown import append_step_summary, to_markdown
from scanner.report.sarif import FINGERPRINT_KEY, fingerprint, to_sarif, to_sarif_many
from scanner.report.schema import SCHEMA_VERSION, load_schema, to_report_json, validate_report
from scanner.io.atomic import atomic_write
from scanner.report.writer import FILE_NAMES, write_reports

DATA = Path(__file__).parent / "data"
MODEL_URI = "fixtures/models/resnet8_badnets.onnx"
EVIL = "<script>alert('x')</script>"
FLAG_RED = (0xD3, 0x2F, 0x2F)  # scanner.report.svg.FLAG_RED, the flagged highlight


# --------------------------------------------------------------------------- fixtures

def backdoor() -> dict:
    return json.loads((DATA / "scan_backdoor.json").read_text())


def with_repair_and_canary(r: dict, detected: bool = True) -> dict:
    r["repair"] = {"pivot_cda": 0.82, "best_cda": 0.81, "best_step": 200, "moved": True,
                   "param_distance": 1.3, "notes": ["repair note"], "wall_s": 40.0,
                   "trajectory": [{"step": s, "cda": 0.82 - 1e-4 * s,
                                   "asr": max(0.05, 0.98 - 0.004 * s)} for s in range(0, 301, 50)]}
    r["canary"] = {"target": 4, "implant_asr": 0.97, "implant_cda": 0.8, "implanted": True,
                   "notes": [], "model_score": 5.1 if detected else 1.2,
                   "top_class": 4 if detected else 9, "detected": detected}
    r["timings"]["canary_s"] = 90.0
    return r


def passed() -> dict:
    r = with_repair_and_canary(backdoor())
    r["verdict"] = "pass"
    r["detection"]["flagged"] = []
    r["detection"]["per_class"][1]["score"] = 0.4
    r["detection"]["model_score"] = 1.0968799188878309
    r["detection"]["top_class"] = 9
    r["reasons"] = ["mask_outlier model score 1.097 < threshold 3.500, and the same scan flagged "
                    "a known implanted backdoor (canary score 5.100)"]
    r["timings"]["total_s"] = 200.0
    return r


def inconclusive_early() -> dict:
    r = backdoor()
    r.update(verdict="inconclusive", detection=None, repair=None, canary=None,
             reasons=["clean accuracy on the trusted data is 0.11 (< 0.30): the preprocessing "
                      "is probably wrong; refusing to judge it"])
    r["trusted"]["clean_accuracy"] = 0.11
    r["timings"] = {"load_s": 2.0}
    return r


def inconclusive_canary() -> dict:
    r = with_repair_and_canary(passed(), detected=False)
    r["verdict"] = "inconclusive"
    r["reasons"] = ["the sensitivity canary was not detected: this scan's budget is too weak"]
    return r


def pass_no_canary() -> dict:
    r = passed()
    r["canary"] = None
    r["settings"]["canary"] = False
    return r


def waived(status: str = "applied") -> dict:
    r = backdoor()
    r["waivers"] = [{"rule": "BDS001", "sha256": r["model"]["sha256"],
                     "reason": "known watermark, ticket SEC-123", "expires": "2027-01-31",
                     "status": status}]
    r["gate"] = {"exit_code": 0 if status == "applied" else 1, "waived": status == "applied"}
    return r


ALL = {"backdoor": backdoor, "pass": passed, "inconclusive_early": inconclusive_early,
       "inconclusive_canary": inconclusive_canary, "pass_no_canary": pass_no_canary,
       "waived": waived}


def triggers(k: int = 10, flagged: int = 1) -> TriggerSet:
    """Random diffuse masks, and a small crisp corner patch for the flagged class."""
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(k, 1, 32, 32, generator=g) * 0.4
    mask[flagged] = 0
    mask[flagged, :, 26:30, 26:30] = 1
    return TriggerSet(list(range(k)), "mask", mask=mask,
                      pattern=torch.rand(k, 3, 32, 32, generator=g))


# --------------------------------------------------------------------------- JSON + schema

@pytest.mark.parametrize("name", sorted(ALL))
def test_report_json_validates(name):
    rep = to_report_json(ALL[name](), {1: "triggers/class_1.png"})
    assert rep["schema_version"] == SCHEMA_VERSION
    assert rep["trigger_images"] == {"1": "triggers/class_1.png"}
    assert validate_report(rep) == []
    json.dumps(rep, allow_nan=False)  # strictly valid JSON


def test_report_json_rejects_broken_reports_and_nulls_nan():
    rep = to_report_json(backdoor())
    bad = dict(rep, verdict="maybe")
    assert validate_report(bad)
    missing = {k: v for k, v in rep.items() if k != "detection"}
    assert any("detection" in e for e in validate_report(missing))
    r = backdoor()
    r["detection"]["model_score"] = float("nan")
    r["detection"]["per_class"][0]["score"] = float("inf")
    rep = to_report_json(r)
    assert rep["detection"]["model_score"] is None and rep["detection"]["per_class"][0]["score"] is None
    assert validate_report(rep) == []
    assert math.isnan(r["detection"]["model_score"])  # the input is not modified


def test_schema_is_valid_and_documents_every_field():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)

    def walk(node, path):
        if isinstance(node, dict):
            for key, sub in (node.get("properties") or {}).items():
                assert "description" in sub or "$ref" in sub, f"{path}/{key} undocumented"
                if "$ref" in sub and "description" not in sub:
                    target = schema["$defs"][sub["$ref"].split("/")[-1]]
                    assert "description" in target, f"{path}/{key} undocumented"
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(schema, "")


# --------------------------------------------------------------------------- SARIF

def _check_sarif_shape(log: dict) -> dict:
    """What GitHub code scanning requires of an uploaded SARIF file."""
    json.dumps(log, allow_nan=False)
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert log["version"] == "2.1.0"
    assert len(log["runs"]) == 1
    run = log["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "backdoor-scanner" and driver["version"]
    assert [r["id"] for r in driver["rules"]] == ["BDS001", "BDS002", "BDS003"]
    for rule in driver["rules"]:
        assert rule["name"] and rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert rule["help"]["text"]
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
        assert "security" in rule["properties"]["tags"]
        sev = rule["properties"]["security-severity"]
        assert isinstance(sev, str) and 0.0 < float(sev) <= 10.0
    assert isinstance(run["results"], list)
    for res in run["results"]:
        assert res["ruleId"] == driver["rules"][res["ruleIndex"]]["id"]
        assert res["message"]["text"]
        assert res["level"] in ("error", "warning", "note")
        assert len(res["locations"]) >= 1  # GitHub rejects a result without a location
        phys = res["locations"][0]["physicalLocation"]
        assert phys["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert not phys["artifactLocation"]["uri"].startswith(("/", "file:"))
        assert "region" not in phys  # a finding is about the whole model file
        assert res["partialFingerprints"][FINGERPRINT_KEY]
    return run


def test_sarif_backdoor():
    r = backdoor()
    run = _check_sarif_shape(to_sarif(r, MODEL_URI))
    (res,) = run["results"]
    assert res["ruleId"] == "BDS001" and res["level"] == "error"
    assert "automobile" in res["message"]["text"] and "6.580" in res["message"]["text"]
    assert "3.500" in res["message"]["text"]
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == MODEL_URI
    want = hashlib.sha256(f"{r['model']['sha256']}:BDS001".encode()).hexdigest()
    assert res["partialFingerprints"][FINGERPRINT_KEY] == want
    assert "suppressions" not in res
    # default URI is the model path as given, repo-relative
    assert (to_sarif(r)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
            ["artifactLocation"]["uri"]) == MODEL_URI


def test_sarif_fingerprint_is_stable_per_model_and_rule():
    a, b = to_sarif(backdoor(), MODEL_URI), to_sarif(backdoor(), MODEL_URI)
    key = lambda log: log["runs"][0]["results"][0]["partialFingerprints"][FINGERPRINT_KEY]  # noqa: E731
    assert key(a) == key(b)
    assert fingerprint("a" * 64, "BDS001") != fingerprint("b" * 64, "BDS001")
    assert fingerprint("a" * 64, "BDS001") != fingerprint("a" * 64, "BDS002")


def test_sarif_pass_is_an_empty_valid_run():
    for make in (passed, pass_no_canary):
        run = _check_sarif_shape(to_sarif(make(), MODEL_URI))
        assert run["results"] == []


def test_sarif_inconclusive():
    run = _check_sarif_shape(to_sarif(inconclusive_early(), MODEL_URI))
    (res,) = run["results"]
    assert res["ruleId"] == "BDS002" and res["level"] == "warning"
    assert "inconclusive. Clean accuracy on the trusted data is 0.11" in res["message"]["text"]
    run = _check_sarif_shape(to_sarif(inconclusive_canary(), MODEL_URI))
    (res,) = run["results"]
    assert res["ruleId"] == "BDS003" and res["level"] == "warning"
    assert "4 deer" in res["message"]["text"] and "canary" in res["message"]["text"]


def test_sarif_waiver_suppresses_only_when_applied():
    (res,) = _check_sarif_shape(to_sarif(waived(), MODEL_URI))["results"]
    (sup,) = res["suppressions"]
    assert sup["kind"] == "external"
    assert "SEC-123" in sup["justification"] and "2027-01-31" in sup["justification"]
    (res,) = _check_sarif_shape(to_sarif(waived("expired"), MODEL_URI))["results"]
    assert "suppressions" not in res
    # a BDS001 waiver never covers an inconclusive scan
    r = inconclusive_early()
    r["waivers"] = waived()["waivers"]
    (res,) = to_sarif(r, MODEL_URI)["runs"][0]["results"]
    assert res["ruleId"] == "BDS002" and "suppressions" not in res


def test_sarif_many_models_one_run():
    other = backdoor()
    other["model"]["sha256"] = "0" * 64
    log = to_sarif_many([(backdoor(), MODEL_URI), (passed(), "models/clean.onnx"),
                         (other, "models/other.onnx")])
    run = _check_sarif_shape(log)
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]]
    assert uris == [MODEL_URI, "models/other.onnx"]


# --------------------------------------------------------------------------- JUnit

def _counts(el: ET.Element) -> tuple[int, int, int, int]:
    return tuple(int(el.get(k)) for k in ("tests", "failures", "errors", "skipped"))


@pytest.mark.parametrize("name,counts,scan_outcome", [
    ("backdoor", (2, 1, 0, 1), "failure"),
    ("pass", (2, 0, 0, 0), None),
    ("inconclusive_early", (2, 0, 1, 1), "error"),
    ("inconclusive_canary", (2, 1, 1, 0), "error"),
    ("pass_no_canary", (2, 0, 0, 1), None),
    ("waived", (2, 0, 0, 2), "skipped"),
])
def test_junit_counts_per_verdict(name, counts, scan_outcome):
    r = ALL[name]()
    root = ET.fromstring(to_junit([r]))
    assert root.tag == "testsuites" and _counts(root) == counts
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == r["model"]["path"] and _counts(suite) == counts
    assert float(suite.get("time")) > 0
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"backdoor-scan", "sensitivity-canary"}
    scan = cases["backdoor-scan"]
    outcome = [c.tag for c in scan if c.tag in ("failure", "error", "skipped")]
    assert outcome == ([scan_outcome] if scan_outcome else [])
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["verdict"] == r["verdict"] and props["sha256"] == r["model"]["sha256"]
    if name == "backdoor":
        assert "1 automobile" in scan.find("failure").get("message")
        assert "flagged" in cases["sensitivity-canary"].find("skipped").get("message")
    if name == "waived":
        assert "SEC-123" in scan.find("skipped").get("message")
    if name == "pass_no_canary":
        assert "disabled" in cases["sensitivity-canary"].find("skipped").get("message")


def test_junit_several_models_and_hostile_text():
    evil = backdoor()
    evil["model"]["path"] = "models/a&b<c>.onnx"
    evil["model"]["class_names"][1] = EVIL + "\x07bell"
    root = ET.fromstring(to_junit([evil, passed(), inconclusive_early()]))
    assert _counts(root) == (6, 1, 1, 2)
    assert [s.get("name") for s in root] == ["models/a&b<c>.onnx", MODEL_URI, MODEL_URI]
    assert EVIL in root[0].find("testcase/failure").get("message")


# --------------------------------------------------------------------------- Markdown

def test_markdown_mentions_verdict_class_and_scores():
    md = to_markdown(with_repair_and_canary(backdoor()))
    assert md.startswith("## Backdoor scan: BACKDOOR SUSPECTED")
    assert "**1 automobile**" in md and "6.580 vs threshold 3.500" in md
    assert "| 1 automobile | 6.580 |" in md and "**FLAGGED**" in md
    assert "BDS001" in md and "### Repair" in md and "**detected**" in md


def test_markdown_other_verdicts():
    md = to_markdown(inconclusive_early())
    assert md.startswith("## Backdoor scan: INCONCLUSIVE: not a pass")
    assert "PASS:" not in md and "clean accuracy on the trusted data is 0.11" in md
    assert "not run" in md
    assert "unverified" in to_markdown(pass_no_canary()).splitlines()[0]
    md = to_markdown(passed())
    assert md.startswith("## Backdoor scan: PASS: no backdoor found") and "BDS00" not in md
    assert "(below the threshold)" in md
    md = to_markdown(inconclusive_canary())
    assert "BDS003" in md and "**NOT detected**" in md
    md = to_markdown(waived())
    assert md.startswith("## Backdoor scan: BACKDOOR SUSPECTED (waived)")
    assert "waived: known watermark" in md


def test_markdown_escapes_untrusted_text():
    r = backdoor()
    r["model"]["class_names"][1] = EVIL + "|x"
    md = to_markdown(r)
    assert "<script>" not in md and "&lt;script>" in md and "\\|x" in md


def test_append_step_summary(tmp_path):
    target = tmp_path / "summary.md"
    assert append_step_summary("# a", env={}) is None
    assert append_step_summary("# a", env={"GITHUB_STEP_SUMMARY": str(target)}) == target
    append_step_summary("# b\n", env={"GITHUB_STEP_SUMMARY": str(target)})
    assert target.read_text() == "# a\n\n# b\n\n"


# --------------------------------------------------------------------------- images + HTML

def test_trigger_pngs():
    assert trigger_pngs(None) == {}
    pngs = trigger_pngs(triggers())
    assert sorted(pngs) == list(range(10))
    im = Image.open(io.BytesIO(pngs[1]))
    assert im.format == "PNG" and im.size == (128, 128) and im.mode == "RGB"
    assert im.getpixel((0, 0)) == (0, 0, 0) and im.getpixel((110, 110)) != (0, 0, 0)
    grey = TriggerSet([3], "additive", delta=torch.randn(1, 1, 28, 28))
    im = Image.open(io.BytesIO(trigger_pngs(grey)[3]))
    assert im.size == (112, 112) and im.mode == "L"


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.imgs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for k in ("href", "src"):
            if k in a and tag != "img":
                raise AssertionError(f"external reference {tag} {k}={a[k]}")


def test_html_is_self_contained_with_embedded_triggers():
    r = with_repair_and_canary(backdoor())
    page = to_html(r, trigger_pngs(triggers()))
    p = _Collect()
    p.feed(page)
    assert "script" not in p.tags and "link" not in p.tags
    assert len(p.imgs) == 10 and all(s.startswith("data:image/png;base64,") for s in p.imgs)
    for src in p.imgs:
        assert Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).format == "PNG"
    assert "BACKDOOR SUSPECTED" in page and r["model"]["sha256"] in page
    assert page.count('class="trigger flagged"') == 1 and ">flagged</span>" in page
    assert page.count("<svg") == 2 and 'class="threshold"' in page  # scores + repair charts
    assert "best step 200" in page and "Sensitivity canary" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page


def test_html_escapes_hostile_class_names_and_handles_every_verdict():
    r = backdoor()
    r["model"]["class_names"][1] = EVIL
    r["model"]["path"] = 'models/"quoted"<b>.onnx'
    page = to_html(r, trigger_pngs(triggers()))
    assert EVIL not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    p = _Collect()
    p.feed(page)
    assert "script" not in p.tags
    for name, make in ALL.items():
        page = to_html(make())
        assert "<img" not in page  # no triggers given
        assert ("INCONCLUSIVE: not a pass" in page) == name.startswith("inconclusive")
    assert "BACKDOOR SUSPECTED (waived)" in to_html(waived())


# --------------------------------------------------------------------------- writer

def test_write_reports_writes_every_format_atomically(tmp_path):
    out = tmp_path / "nested" / "reports"
    r = with_repair_and_canary(backdoor())
    written = write_reports(r, out, triggers=triggers(), model_uri=MODEL_URI)
    for fmt, name in FILE_NAMES.items():
        assert written[fmt] == out / name and written[fmt].stat().st_size > 0
    assert len([k for k in written if k.startswith("trigger_")]) == 10
    rep = json.loads((out / "report.json").read_text())
    assert validate_report(rep) == []
    for cls, rel in rep["trigger_images"].items():
        assert (out / rel).is_file() and rel == f"triggers/class_{cls}.png"
    assert json.loads((out / "report.sarif").read_text())["runs"][0]["results"][0]["ruleId"] == "BDS001"
    ET.fromstring((out / "report.junit.xml").read_bytes())
    assert (out / "report.md").read_text().startswith("## Backdoor scan")
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 10
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    (tmp_path / "plain").write_text("x")  # atomic files get the same mode as a plain write
    assert (out / "report.json").stat().st_mode == (tmp_path / "plain").stat().st_mode

    only = write_reports(inconclusive_early(), tmp_path / "only", formats=("json", "md"))
    assert sorted(only) == ["json", "md"] and not (tmp_path / "only" / "triggers").exists()
    with pytest.raises(ValueError):
        write_reports(backdoor(), tmp_path / "x", formats=("pdf",))


def test_atomic_write_replaces_and_cleans_up(tmp_path, monkeypatch):
    f = tmp_path / "a.txt"
    atomic_write(f, "one")
    atomic_write(f, b"two")
    assert f.read_text() == "two"

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(f, "three")
    assert f.read_text() == "two" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


# --------------------------------------------------------------------------- headless Chromium

def _chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        return env if shutil.which(env) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_html_renders_in_headless_chromium(tmp_path):
    """Render report.html in a real browser and check the picture is a report, not a blank page."""
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium binary (install the Debian package: apt-get install -y chromium, "
                    "or set CHROMIUM=/path/to/chrome)")
    r = with_repair_and_canary(backdoor())
    written = write_reports(r, tmp_path / "rep", triggers=triggers(), formats=("html",))
    shot = tmp_path / "shot.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
           f"--screenshot={shot}", written["html"].resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    im = Image.open(shot).convert("RGB")
    assert im.size == (1200, 1600)
    small = im.resize((300, 400))
    colours = small.getcolors(maxcolors=300 * 400)
    assert len(colours) > 50, "screenshot is (nearly) one colour: the page did not render"
    var = ImageStat.Stat(small.convert("L")).var[0]
    assert var > 100, f"too little contrast (variance {var:.0f})"

    def close(c, ref, tol=8):
        return all(abs(a - b) <= tol for a, b in zip(c, ref))

    red = sum(n for n, c in im.getcolors(maxcolors=1200 * 1600) if close(c, FLAG_RED))
    assert red > 2000, f"flagged highlight colour missing ({red} px)"
    banner = im.getpixel((600, 20))
    assert banner[0] > 150 and banner[1] < 60 and banner[2] < 60, f"banner not red: {banner}"
