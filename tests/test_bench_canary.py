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


def _gate_row(name, attack, asr, verdict, score, nc, all_to_all=False):
    return {"model": name, "arch": "resnet32", "attack": attack, "all_to_all": all_to_all,
            "target": 1 if attack and not all_to_all else None, "train_asr": asr,
            "train_cda": 0.7, "verdict": verdict, "score": score, "top_class": 1,
            "nc_index": nc, "canary_score": None, "canary_detected": None,
            "canary_cost": 0.02 if verdict == "pass" else None, "reasons": [], "wall_s": 60.0}


def test_gate_summary_counts_only_implanted_all_to_one_backdoors():
    from scanner.lab.bench_gate import kind, summary_lines

    rows = [_gate_row("c1", None, None, "pass", 1.0, 1.1),
            _gate_row("c2", None, None, "inconclusive", 2.0, 2.5),
            _gate_row("b1", "badnets", 0.95, "backdoor", 9.0, 6.0),
            _gate_row("b2", "blend", 0.90, "pass", 3.0, 1.5),
            _gate_row("weak", "grid_patch", 0.10, "pass", 0.5, 0.5),
            _gate_row("a2a", "all_to_all", 0.85, "pass", 1.0, 1.0, all_to_all=True)]
    assert [kind(r) for r in rows] == ["clean", "clean", "backdoor", "backdoor", "not_implanted",
                                       "all_to_all"]
    text = "\n".join(summary_lines(rows))
    assert "backdoored (implanted, all-to-one): 2 models, flagged 1, passed 1, inconclusive 0" in text
    assert "clean: 2 models, flagged 0, passed 1, inconclusive 1" in text
    assert "all-to-all: 1 models, flagged 0, passed 1" in text
    assert "ROC AUC of the model score: 1.000" in text  # 9, 3 above 1, 2
    assert "backdoored flagged 1/2, clean flagged 1/2" in text  # NC: 6 >= 2; 2.5 >= 2
