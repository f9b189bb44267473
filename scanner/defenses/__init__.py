"""Model repair: Pivotal Tuning and the baselines, all returning a RepairResult."""
