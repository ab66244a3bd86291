"""checkov over the rendered defaults and the secure scenario: nothing fails but the checks that
ci/checkov-skips.yaml lists, each with its reason. The counts are printed (`pytest -s`) and are
part of every failure message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chartrender import REPO, render_text, scenario_file

SKIPS_FILE = REPO / "ci" / "checkov-skips.yaml"


def skip_list(scenario: str) -> list[str]:
    entries = yaml.safe_load(SKIPS_FILE.read_text())["skips"]
    for entry in entries:
        assert entry["id"] and len(entry["reason"].strip()) > 40, f"{entry['id']}: give a reason"
    return [e["id"] for e in entries if scenario in e.get("scenarios", [scenario])]


def _checkov() -> str:
    found = shutil.which("checkov") or str(Path(sys.executable).parent / "checkov")
    assert Path(found).exists(), "checkov is not installed; run `bash ci/install-tools.sh`"
    return found


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["default", "secure"])
def test_checkov_passes(helm4: str, scenario: str, tmp_path: Path) -> None:
    (tmp_path / "rendered.yaml").write_text(
        render_text(helm4, "-f", scenario_file(scenario), namespace="etcd")
    )
    skips = skip_list(scenario)
    environment = {
        **os.environ,
        # Offline: no guideline download, no update check (checkov otherwise calls home).
        "BC_SKIP_MAPPING": "TRUE",
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "True",
    }
    result = subprocess.run(
        [
            _checkov(),
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--quiet",
            "--compact",
            "-o",
            "json",
            "--skip-download",
            "--skip-check",
            ",".join(skips),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
        cwd=tmp_path,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [
        f"{check['check_id']} {check['check_name']} ({check['resource']})"
        for check in report["results"]["failed_checks"]
    ]
    counts = (
        f"checkov {scenario}: passed {summary['passed']}, failed {summary['failed']}, "
        f"skipped by ci/checkov-skips.yaml {len(skips)} ({', '.join(skips)})"
    )
    print(counts)
    assert failed == [], f"{counts}\n" + "\n".join(failed)
    assert result.returncode == 0, f"{counts}\n{result.stderr}"
    assert summary["passed"] > 150, counts
    assert summary["parsing_errors"] == 0, counts
