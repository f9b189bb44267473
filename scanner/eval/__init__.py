"""Evaluation harness: benchmarks and games over model zoos (uses attacks, defenses, detectors)."""
