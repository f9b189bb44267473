"""Gate policy: thresholds, budgets and waivers, read from TOML.

Strict on purpose: an unknown key or a bad value is an input error naming the key, because a
typo in a CI gate's config silently weakening it is worse than a failed build.

The dataclasses below are the single source of truth: every field carries its documentation,
``scan init`` renders the commented policy file from them, and ``rules/default.toml`` is that
rendering (a test keeps the two identical).

Discovery (``find_policy``): ``--config FILE``, else ``scan.toml``, else ``[tool.scan]`` in
``pyproject.toml``, looked up from the working directory towards the repository root; else the
built-in defaults.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from scanner.budget import LEVELS, Budget, default_budget
from scanner.errors import InputError
from scanner.waivers import RULES, WAIVABLE, Waiver, parse_waivers

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from scanner.defenses.registry import list_defenses  # noqa: E402 - after the tomllib choice
from scanner.detectors.registry import DETECTORS  # noqa: E402

METHODS = tuple(DETECTORS.names())
DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "rules" / "default.toml"
DEVICES = ("cpu", "cuda")


def _f(default, doc: str, lo=None, hi=None, choices=None):
    """A documented, range-checked policy field."""
    return field(default=default, metadata={"doc": doc, "range": (lo, hi), "choices": choices})


@dataclass
class GatePolicy:
    method: str = _f("mask", "Detector. \"mask\": reversed mask+pattern triggers (Neural Cleanse's "
                     "optimisation), outlier test on the log of the mask norms (the default); "
                     "\"nc\": Neural Cleanse as published (linear MAD index > nc_threshold), the "
                     "baseline; \"cti\": Calibrated Trigger Inversion after Pivotal Tuning, outlier "
                     "test on the log mask norms of triggers the repair made the model resist "
                     "(experimental, slower); \"ratio\": triggers reversed on the model and on its "
                     "Pivotal-Tuning repair, outlier test on the log ratio of their mask norms "
                     "(experimental, slower).", choices=METHODS)
    mask_threshold: float = _f(3.5, "\"mask\": flag a class whose log mask norm lies this many "
                               "MAD-scaled deviations below the median (3.5 is the usual "
                               "modified-z-score outlier rule).", 0.0, 100.0)
    nc_threshold: float = _f(2.0, "\"nc\": Neural Cleanse's own anomaly-index rule.", 0.0, 100.0)
    ratio_threshold: float = _f(3.5, "\"ratio\": flag a class whose log(mask norm after "
                                "repair / before) lies this many MAD-scaled deviations above the "
                                "median (the usual modified-z-score outlier rule).", 0.0, 100.0)
    cti_threshold: float = _f(3.5, "\"cti\": flag a class whose calibrated trigger (one the "
                              "repaired copy resists) has a log mask norm this many MAD-scaled "
                              "deviations below the median (the modified-z-score outlier rule, "
                              "as for mask).", 0.0, 100.0)
    min_clean_accuracy: float = _f(0.3, "Below this clean accuracy on the trusted data the scan is "
                                   "inconclusive: the preprocessing (--mean/--std/--value-range/"
                                   "--layout) or the class map is probably wrong.", 0.0, 1.0)
    min_per_class: int = _f(5, "Minimum trusted images for every class of the model.", 0, 100_000)
    holdout: float = _f(0.2, "Share of the trusted data held out to track clean accuracy and "
                        "score triggers.", 0.01, 0.9)
    canary: bool = _f(True, "Run the sensitivity canary before trusting a \"pass\" (a known "
                      "backdoor implanted into a copy must be found by the same scan).")
    canary_scope: str = _f("all", "What the canary re-scans. \"all\": every class of the "
                           "implanted copy, as a fresh scan. \"target\": only the implanted "
                           "class, scored against this scan's values for the other classes "
                           "(about a tenth of the canary's inversion work on 10 classes, but it "
                           "overstated the canary's score in our measurement: RESULTS.md).",
                           choices=("all", "target"))


@dataclass
class RepairPolicy:
    max_cda_drop: float = _f(0.02, "Largest clean-accuracy drop (fraction) a repaired model may "
                             "show on the held-out data (the paper's Delta).", 0.0, 1.0)
    defense: str = _f("pivotal", "Repair method for `scan repair`: pivotal (Pivotal Tuning), or a "
                      "baseline: fine_pruning, nad, weight_decay, nc_repair.",
                      choices=tuple(list_defenses()))


@dataclass
class Policy:
    gate: GatePolicy = field(default_factory=GatePolicy)
    repair: RepairPolicy = field(default_factory=RepairPolicy)
    # [repair.params]: knobs of the chosen defense's config (e.g. written by `scan eval search`)
    repair_params: dict = field(default_factory=dict)
    # (device, level) -> overridden Budget fields
    budget: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    waivers: list[Waiver] = field(default_factory=list)
    source: str = "built-in defaults"

    def budget_for(self, device_type: str, level: str, **overrides) -> Budget:
        dev = "cuda" if device_type == "cuda" else "cpu"
        merged = {**self.budget.get((dev, level), {}),
                  **{k: v for k, v in overrides.items() if v is not None}}
        return default_budget(dev, level, **merged)


def _section(cls, data: dict, name: str, src: str):
    if not isinstance(data, dict):
        raise InputError(f"{src}: [{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    out = cls()
    for k, v in data.items():
        key = f"{name}.{k}"
        if k not in known:
            raise InputError(f"{src}: unknown key {key!r}", hint="known: " + ", ".join(
                f"{name}.{n}" for n in known))
        meta = known[k].metadata
        want = type(getattr(out, k))
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, want) or (want is int and isinstance(v, bool)):
            raise InputError(f"{src}: {key} must be {want.__name__}, got {v!r}")
        if meta.get("choices") and v not in meta["choices"]:
            raise InputError(f"{src}: {key} must be one of {', '.join(meta['choices'])}, got {v!r}")
        lo, hi = meta.get("range", (None, None))
        if lo is not None and not lo <= v <= hi:
            raise InputError(f"{src}: {key} = {v!r} is outside [{lo}, {hi}]")
        setattr(out, k, v)
    return out


def _budgets(data: dict, src: str) -> dict[tuple[str, str], dict[str, int]]:
    known = {f.name for f in fields(Budget)}
    out: dict[tuple[str, str], dict[str, int]] = {}
    if not isinstance(data, dict):
        raise InputError(f"{src}: [budget] must be a table")
    for dev, levels in data.items():
        if dev not in DEVICES or not isinstance(levels, dict):
            raise InputError(f"{src}: unknown key 'budget.{dev}'",
                             hint="use [budget.cpu.<level>] or [budget.cuda.<level>]")
        for level, values in levels.items():
            if level not in LEVELS or not isinstance(values, dict):
                raise InputError(f"{src}: unknown key 'budget.{dev}.{level}'",
                                 hint="levels: " + ", ".join(LEVELS))
            for k, v in values.items():
                key = f"budget.{dev}.{level}.{k}"
                if k not in known:
                    raise InputError(f"{src}: unknown key {key!r}",
                                     hint="known: " + ", ".join(sorted(known)))
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise InputError(f"{src}: {key} must be a positive integer, got {v!r}")
            out[(dev, level)] = dict(values)
    return out


def _repair_params(data, defense: str, src: str) -> dict:
    """Validate ``[repair.params]`` against the chosen defense's config, so a typo fails at load."""
    from scanner.defenses.registry import check_tunable, make_config

    if not isinstance(data, dict):
        raise InputError(f"{src}: [repair.params] must be a table")
    check_tunable(data, f"{src}: [repair.params]")
    for k, v in data.items():
        if not isinstance(v, (bool, int, float, str)):
            raise InputError(f"{src}: repair.params.{k} must be a number, boolean or string, "
                             f"got {v!r}")
    try:
        make_config(defense, "cpu", **data)
    except InputError as e:
        raise InputError(f"{src}: [repair.params] for defense {defense!r}: {e.message}",
                         hint=e.hint) from None
    except (TypeError, ValueError) as e:
        raise InputError(f"{src}: [repair.params] for defense {defense!r}: {e}") from None
    return dict(data)


def policy_from_dict(data: dict, src: str = "config") -> Policy:
    sections = {"gate": GatePolicy, "repair": RepairPolicy}
    unknown = [k for k in data if k not in (*sections, "budget", "waivers")]
    if unknown:
        raise InputError(f"{src}: unknown section(s) {', '.join(unknown)}",
                         hint="known: gate, repair, budget, waivers")
    repair = data.get("repair", {})
    params = repair.get("params", {}) if isinstance(repair, dict) else {}
    if isinstance(repair, dict):
        repair = {k: v for k, v in repair.items() if k != "params"}
    parsed = {name: _section(cls, repair if name == "repair" else data.get(name, {}), name, src)
              for name, cls in sections.items()}
    return Policy(**parsed, repair_params=_repair_params(params, parsed["repair"].defense, src),
                  budget=_budgets(data.get("budget", {}), src),
                  waivers=parse_waivers(data.get("waivers", []), src), source=src)


def _read_toml(p: Path) -> dict:
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{p}: invalid TOML ({exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read ({exc})") from exc


def load_policy(path: str | Path | None = None) -> Policy:
    """Read a policy TOML (``None``: the built-in defaults)."""
    if path is None:
        return Policy()
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file not found: {p}")
    data = _read_toml(p)
    if p.name == "pyproject.toml":
        data = data.get("tool", {}).get("scan", {})
    return policy_from_dict(data, str(p))


def find_policy(config: str | Path | None = None, cwd: str | Path | None = None) -> Policy:
    """``--config``, else ``scan.toml`` / ``[tool.scan]`` from ``cwd`` up to the repository root."""
    if config is not None:
        return load_policy(config)
    here = Path(cwd or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "scan.toml").is_file():
            return load_policy(d / "scan.toml")
        pp = d / "pyproject.toml"
        if pp.is_file() and "scan" in _read_toml(pp).get("tool", {}):
            return load_policy(pp)
        if (d / ".git").exists():
            break
    return Policy()


def toml_value(v) -> str:
    """One TOML scalar: booleans, numbers, or a basic string with quotes and backslashes escaped.

    Public because ``scan init``'s template and the lab's searched policies (``scan eval
    search``) must write values the same way the loader reads them back.
    """
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def _wrap(text: str, width: int = 96) -> list[str]:
    import textwrap

    return ["# " + line for line in textwrap.wrap(text, width - 2)]


def render_policy_template() -> str:
    """The commented policy file ``scan init`` writes (and ``rules/default.toml`` holds)."""
    lines = ["# Gate policy for `scan` (written by `scan init`; rules/default.toml is the default).",
             "# Every key is optional; an unknown key or a bad value is an error (exit 2).",
             "# Found automatically as ./scan.toml or [tool.scan] in pyproject.toml; or --config.",
             ""]
    for name, cls in (("gate", GatePolicy), ("repair", RepairPolicy)):
        lines.append(f"[{name}]")
        for f in fields(cls):
            lines += _wrap(f.metadata["doc"])
            lines.append(f"{f.name} = {toml_value(f.default)}")
        lines.append("")
    lines += _wrap("Knobs of the repair defense's config for `scan repair` (names as in the "
                   "defense's config; an unknown name is an error). `scan eval search` writes "
                   "this table. They override the budget's steps and batch size.")
    lines += ["# [repair.params]", "# unlearn = 0.3", ""]
    lines += _wrap("Compute budgets: [budget.<cpu|cuda>.<fast|standard|thorough>] overrides any of "
                   + ", ".join(f.name for f in fields(Budget)) + ". Built-in values:")
    for dev in DEVICES:
        for level in LEVELS:
            b = default_budget(dev, level)
            lines.append(f"#   {dev}.{level}: " + ", ".join(
                f"{k}={v}" for k, v in b.to_dict().items()))
    lines += ["# [budget.cpu.standard]", "# invert_steps = 300", ""]
    lines += _wrap("Waivers accept a backdoor finding for one model until a date; an expired waiver "
                   "stops applying and the report says so. A waiver never turns an inconclusive "
                   "scan into a pass. Rules: " + ", ".join(f"{k} ({n})" for k, n in RULES.items()
                                                          if k in WAIVABLE) + ".")
    lines += ["# [[waivers]]", '# sha256 = "<64 hex digits of the model file>"',
              '# rule = "BDS001"', '# reason = "known watermark, ticket SEC-123"',
              "# expires = 2027-01-31", ""]
    return "\n".join(lines)
