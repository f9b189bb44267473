"""Backdoor scanner for image classifiers in deployment pipelines."""

__version__ = "0.1.0"
