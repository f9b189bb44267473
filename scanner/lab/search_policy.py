"""A search result as a policy TOML that ``scan repair --config`` uses.

``[repair] defense`` and ``max_cda_drop``, and the chosen knobs as ``[repair.params]`` (the
policy loader checks every name against the defense's config); the search itself is written as
comments above them. Values go through the policy's own TOML writer
(:func:`scanner.policy.toml_value`), and the text is parsed back by the loader's rules before
the file is written, so ``scan`` never meets a file it would reject.
"""

from __future__ import annotations

import datetime as dt
import sys
import textwrap
from pathlib import Path

from scanner.errors import InputError
from scanner.lab.search import SearchResult, format_params

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def render_policy(result: SearchResult, *, model: str = "", trusted: str = "",
                  today: dt.date | None = None) -> str:
    """A policy TOML that ``scanner.policy.load_policy`` accepts, with the search as comments."""
    from scanner.policy import toml_value

    today = today or dt.date.today()
    b = result.best
    lines = [
        f"# Written by `scan eval search` on {today.isoformat()}.",
        "# Defense hyper-parameters chosen by self-poisoning (paper Sec. 5.3): a known patch backdoor",
        "# was implanted into a copy of the model with the trusted data, and every grid point was",
        "# scored by eta = the lowest ASR of that backdoor while clean accuracy stayed within",
        f"# max_cda_drop = {result.delta:g} of the implanted copy's.",
    ]
    if model:
        lines.append(f"# model: {model}")
    if trusted:
        lines.append(f"# trusted data: {trusted} ({result.n_trusted['tune']} tune / "
                     f"{result.n_trusted['held']} held-out / {result.n_trusted['eval']} evaluation images)")
    c = result.canary
    lines += [f"# implant: target class {c['target']}, ASR {c['asr']:.3f}, clean accuracy "
              f"{c['cda']:.3f} (original model {c['original_cda']:.3f})",
              *("# " + ln for w in result.notes
                for ln in textwrap.wrap("WARNING: " + w, 94)),
              "#", "# grid results (eta, then ASR/accuracy of the state the defense keeps):"]
    for t in result.trials:
        mark = "  <- chosen" if t is b else ""
        lines.append(f"#   {format_params(t['params']):40s} eta {t['eta']:.3f}  kept ASR "
                     f"{t['deployed_asr']:.3f} CDA {t['deployed_cda']:.3f}{mark}")
    if result.base_overrides:
        lines.append("# fixed for every grid point: " + format_params(result.base_overrides))
    knobs = {**result.base_overrides, **b["params"]}
    lines += ["", "[repair]", f"defense = {toml_value(result.defense)}",
              f"max_cda_drop = {toml_value(float(result.delta))}", "",
              "# the chosen knobs; `scan repair --config THIS_FILE` uses them", "[repair.params]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in knobs.items() if v is not None]
    lines.append("")
    return "\n".join(lines)


def write_policy(result: SearchResult, out: str | Path, *, force: bool = False, model: str = "",
                 trusted: str = "") -> Path:
    """Render, validate with the policy loader's own rules, then write ``out`` atomically."""
    from scanner.policy import policy_from_dict

    out = Path(out)
    if out.exists() and not force:
        raise InputError(f"{out} exists; not overwriting it", hint="pass --force to replace it")
    text = render_policy(result, model=model, trusted=trusted)
    policy_from_dict(tomllib.loads(text), str(out))  # never write a file `scan` would reject
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
