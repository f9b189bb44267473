"""The GitHub side: the composite action, the project's CI workflow, the README's example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml is a test extra")
ROOT = Path(__file__).resolve().parent.parent


def _load(p: Path) -> dict:
    return yaml.safe_load(p.read_text())


def test_action_is_a_composite_that_uploads_sarif_always():
    act = _load(ROOT / "action.yml")
    assert act["runs"]["using"] == "composite"
    assert {"model", "trusted"} <= {k for k, v in act["inputs"].items() if v.get("required")}
    steps = act["runs"]["steps"]
    used = {s.get("uses", "").split("@")[0]: s for s in steps}
    sarif = used["github/codeql-action/upload-sarif"]
    assert "always()" in sarif["if"] and sarif["with"]["sarif_file"].endswith("report.sarif")
    for s in steps:  # composite run steps must name their shell
        if "run" in s:
            assert s.get("shell") == "bash"
    scan = next(s for s in steps if s.get("id") == "scan")
    assert "--report-dir" in scan["run"] and "GITHUB_OUTPUT" in scan["run"]
    # every ${{ inputs.X }} the action references is declared
    text = (ROOT / "action.yml").read_text()
    for name in re.findall(r"inputs\.([A-Za-z0-9_-]+)", text):
        assert name in act["inputs"], name
    gate = steps[-1]
    assert "always()" in gate["if"] and "exit 1" in gate["run"] and "exit 3" in gate["run"]


def test_ci_workflow_runs_the_readme_test_command():
    wf = _load(ROOT / ".github" / "workflows" / "ci.yml")
    runs = " ".join(s.get("run", "") for job in wf["jobs"].values() for s in job["steps"])
    readme = (ROOT / "README.md").read_text()
    test_cmd = "python -m pytest -q"
    assert test_cmd in runs and test_cmd in readme
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def test_readme_example_workflow_uses_the_action():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    wfs = [yaml.safe_load(b) for b in blocks]
    wf = next(w for w in wfs if isinstance(w, dict) and "jobs" in w)
    job = next(iter(wf["jobs"].values()))
    assert job["permissions"]["security-events"] == "write"
    step = next(s for s in job["steps"] if "backdoor" in s.get("uses", "") or
                s.get("uses", "").startswith("./"))
    assert {"model", "trusted"} <= set(step["with"])


def test_readme_usage_documents_every_flag_of_every_command():
    """The README's usage section must not drift from `--help`."""
    import typer.main

    from scanner.cli import app

    readme = (ROOT / "README.md").read_text()
    usage = readme[readme.index("## Usage"):readme.index("## Measured results")]
    group = typer.main.get_command(app)
    missing = []
    commands = []
    for name, cmd in group.commands.items():
        commands.append((name, cmd))
        commands += [(f"{name} {n}", c) for n, c in getattr(cmd, "commands", {}).items()]
    for name, cmd in commands:
        assert name in usage, f"command {name} not in README usage"
        for p in cmd.params:
            opts = [o for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
            if opts and opts[0] != "--help" and not any(o in usage for o in opts):
                missing.append(f"{name} {opts[0]}")
    assert not missing, missing
