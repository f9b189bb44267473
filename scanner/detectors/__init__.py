"""Backdoor detectors (CTI, Neural Cleanse) and the sensitivity canary."""
