"""The copy-paste GitHub Actions example parses and runs the documented commands."""

from __future__ import annotations

from pathlib import Path

import pytest

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "github-actions-bench.yml"


def test_workflow_is_valid_yaml_with_the_gate() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    wf = yaml.safe_load(WORKFLOW.read_text())
    assert "pull_request" in wf[True]  # YAML 1.1 reads the bare key `on` as True
    steps = wf["jobs"]["latency"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "icpd bench ab base-model pr-model --quick --json ab.json" in runs
    assert "icpd bench compare ab.json" in runs and "icpd export" in runs
    refs = [s.get("with", {}).get("ref") for s in steps if s.get("uses", "").startswith("actions/checkout")]
    assert refs == [None, "${{ github.event.pull_request.base.sha }}"]  # PR head and its base
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "ab.json" in upload["with"]["path"]
