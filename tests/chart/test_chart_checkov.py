"""checkov over the rendered defaults and the secure scenario, run with no skips: at most as many
failed checks as the Bitnami etcd chart has measured the same way, and every failed check listed
in ci/checkov-skips.yaml with its reason. The counts (failed without skips, of which explained by
the skips file) are printed (`pytest -s`) and are part of every failure message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

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


# The Bitnami etcd chart 12.0.20, `helm template r CHART -n etcd` with its defaults, checkov
# 3.3.30, no skips: 7 failed checks (issue 15).
BITNAMI_FAILED = 7


def _run_checkov(rendered: str, workdir: Path) -> dict[str, Any]:
    (workdir / "rendered.yaml").write_text(rendered)
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
            str(workdir),
            "--framework",
            "kubernetes",
            "--quiet",
            "--compact",
            "-o",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
        cwd=workdir,
    )
    assert result.stdout.strip(), (
        f"checkov printed no report ({result.returncode}):\n{result.stderr}"
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["default", "secure"])
def test_checkov_fails_no_more_than_bitnami_and_each_failure_is_explained(
    helm4: str, scenario: str, tmp_path: Path
) -> None:
    # The defaults exactly as measured in the issue: `helm template r CHART -n etcd`.
    arguments = () if scenario == "default" else ("-f", scenario_file(scenario))
    report = _run_checkov(render_text(helm4, *arguments, release="r"), tmp_path)
    summary = report["summary"]
    skips = skip_list(scenario)
    failed = [
        (check["check_id"], f"{check['check_id']} {check['check_name']} ({check['resource']})")
        for check in report["results"]["failed_checks"]
    ]
    explained = [text for check_id, text in failed if check_id in skips]
    unexplained = [text for check_id, text in failed if check_id not in skips]
    stale = sorted(set(skips) - {check_id for check_id, _ in failed})
    counts = (
        f"checkov {summary.get('checkov_version', '?')} {scenario}: passed {summary['passed']}, "
        f"failed without skips {summary['failed']} (Bitnami etcd 12.0.20: {BITNAMI_FAILED}), "
        f"of which skipped by ci/checkov-skips.yaml {len(explained)} "
        f"({', '.join(sorted({check_id for check_id, _ in failed if check_id in skips}))}), "
        f"unexplained {len(unexplained)}"
    )
    print(counts)
    assert summary["parsing_errors"] == 0, counts
    assert summary["passed"] > 150, counts
    assert summary["failed"] == len(failed), counts
    assert unexplained == [], f"{counts}\n" + "\n".join(unexplained)
    assert len(failed) <= BITNAMI_FAILED, f"{counts}\n" + "\n".join(explained)
    assert stale == [], f"{counts}\nci/checkov-skips.yaml lists checks that pass: {stale}"
