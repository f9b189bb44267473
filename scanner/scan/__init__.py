"""The product's jobs as plain functions returning results (no printing, no exit codes).

    request = build_request(policy, device="cpu", seed=0, method="mask")
    result = detect("model.onnx", "trusted/", request)       # ScanResult
    fixed = repair("model.onnx", "trusted/", "fixed.onnx", request)

The CLI parses flags into one :class:`ScanRequest` and renders what comes back; the evaluation
package (``scanner.lab``) uses the same public names.
"""

from scanner.scan.canary import CanaryConfig, canary_patch, implant_canary, stamp_canary
from scanner.scan.detect_job import detect, run_detection
from scanner.scan.inspect_job import inspect
from scanner.io.trusted_split import TrustedSplit
from scanner.scan.prepare import clean_accuracy
from scanner.scan.repair_job import repair, run_defense
from scanner.scan.request import ScanRequest, SpecOverrides, build_request
from scanner.scan.results import (VERDICT_BACKDOOR, VERDICT_INCONCLUSIVE, VERDICT_PASS,
                                  InspectResult, RepairJobResult, ScanResult)
from scanner.scan.selftest_job import run_selftest
from scanner.scan.verdict import exit_code

__all__ = [
    "CanaryConfig", "canary_patch", "implant_canary", "stamp_canary", "detect", "run_detection",
    "inspect", "TrustedSplit", "clean_accuracy", "repair", "run_defense", "ScanRequest",
    "SpecOverrides", "build_request", "VERDICT_BACKDOOR", "VERDICT_INCONCLUSIVE", "VERDICT_PASS",
    "InspectResult", "RepairJobResult", "ScanResult", "run_selftest", "exit_code",
]
