"""Pure tensor functions behind the defenses and detectors (testable on tiny tensors)."""
