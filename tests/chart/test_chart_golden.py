"""The rendered defaults, byte for byte, from Helm 3.17, the newest Helm 3 and Helm 4.

The chart is copied with a fixed stand-in for the agent's modules (files/etcd-agent/), so that
changes to the agent (embedded in two ConfigMaps) do not churn the golden file. Regenerate with
`UPDATE_GOLDEN=1 pytest tests/chart -k golden`.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from chartrender import CHART

GOLDEN = Path(__file__).parent / "golden" / "default.yaml"
AGENT_STAND_IN = "# member agent stand-in for the golden rendering\n"


@pytest.fixture(scope="session")
def golden_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chart = tmp_path_factory.mktemp("golden") / "etcd"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(chart / "files" / "etcd-agent")
    (chart / "files" / "etcd-agent").mkdir()
    (chart / "files" / "etcd-agent" / "__main__.py").write_text(AGENT_STAND_IN)
    return chart


def test_default_rendering_matches_golden(every_helm: str, golden_chart: Path) -> None:
    result = subprocess.run(
        [every_helm, "template", "etcd", str(golden_chart), "--namespace", "etcd"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(result.stdout)
    expected = GOLDEN.read_text()
    if result.stdout != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                result.stdout.splitlines(keepends=True),
                str(GOLDEN),
                f"{Path(every_helm).name} template",
            )
        )
        pytest.fail(f"rendering differs from the golden file (UPDATE_GOLDEN=1 to accept):\n{diff}")
