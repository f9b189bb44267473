"""Reading a scan's report back for a repair: only a report of the same file, and only finite
scores, may name the suspect class."""

from __future__ import annotations

import json
import math

import pytest

from scanner.errors import InputError
from scanner.io.prior_report import load_prior_detection

SHA = "ab" * 32


def _report(tmp_path, **over):
    doc = {"verdict": "backdoor", "model": {"path": "m.onnx", "sha256": SHA},
           "detection": {"method": "mask_outlier", "model_score": 5.5, "flagged": [2],
                         "wall_s": 31.0,
                         "per_class": [{"cls": 0, "score": 0.3, "asr_pivot": 0.2},
                                       {"cls": 1, "score": None, "asr_pivot": None},
                                       {"cls": 2, "score": 5.5, "asr_pivot": 0.99}]}}
    doc.update(over)
    p = tmp_path / "report.json"
    p.write_text(json.dumps(doc))
    return p


def test_detection_comes_back_with_its_top_class(tmp_path):
    det = load_prior_detection(_report(tmp_path), SHA)
    assert det.method == "mask_outlier" and det.top_class == 2 and det.flagged == [2]
    assert det.model_score == 5.5 and det.triggers is None
    assert det.extra["source"] == "the scan report report.json"
    # a class the detector could not score (null) sinks to the bottom, it is never the suspect
    assert det.per_class[1].score == -math.inf


def test_null_scores_never_win(tmp_path):
    rows = [{"cls": 0, "score": None}, {"cls": 1, "score": -2.0}]
    p = _report(tmp_path, detection={"method": "cti", "model_score": None, "flagged": [],
                                     "per_class": rows})
    assert load_prior_detection(p, SHA).top_class == 1


@pytest.mark.parametrize("change, words", [
    ({"model": {"sha256": "cd" * 32}}, "another model file"),
    ({"model": {}}, "another model file"),
    ({"detection": None}, "has no detection"),
    ({"detection": {"method": "cti", "per_class": [{"cls": 0, "score": None}]}},
     "no finite class score"),
    ({"detection": {"method": "cti", "per_class": [{"score": 1.0}]}}, "malformed"),
])
def test_reports_that_cannot_steer_a_repair_are_refused(tmp_path, change, words):
    with pytest.raises(InputError, match=words):
        load_prior_detection(_report(tmp_path, **change), SHA)


def test_a_class_the_model_does_not_have_is_refused(tmp_path):
    p = _report(tmp_path)
    assert load_prior_detection(p, SHA, num_classes=3).top_class == 2
    with pytest.raises(InputError, match="malformed"):
        load_prior_detection(p, SHA, num_classes=2)


def test_unreadable_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_prior_detection(tmp_path / "missing.json", SHA)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not a JSON report"):
        load_prior_detection(bad, SHA)
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="not a scan report"):
        load_prior_detection(bad, SHA)
