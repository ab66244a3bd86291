"""`etcd-chart validate` as a process: exit codes, stdout, stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "postrender" / "values"


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etcd_chart.cli", "validate", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )


def test_valid_files(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("replicas: 5\n")
    result = validate(str(good), "--schema", str(DATA / "schema.json"))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{good}: valid\n", "")


def test_problems_of_every_file_in_one_run(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("replicas: -1\n")
    second.write_text("imag:\n  pullPolicy: Always\n")
    result = validate(
        str(first),
        str(second),
        "--schema",
        str(DATA / "schema.json"),
        "--defaults",
        str(DATA / "defaults.yaml"),
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"{first}: replicas: -1 is less than the minimum of 1 (use a number >= 1)\n"
        f"{second}: imag: unknown key (did you mean image?)\n"
    )


def test_unreadable_file_and_schema(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = validate(str(missing), "--schema", str(DATA / "schema.json"))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"etcd-chart validate: {missing}: cannot read: ")
    result = validate(str(missing), "--schema", str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"etcd-chart validate: {tmp_path / 'nope.json'}: cannot read")


def test_chart_rules_name_the_field_and_the_fix(tmp_path: Path) -> None:
    """The chart's own cross-field rules, through `helm template`: one line per problem."""
    labels, quota = tmp_path / "labels.yaml", tmp_path / "quota.yaml"
    labels.write_text("podLabels:\n  app.kubernetes.io/name: db\n")
    quota.write_text("config:\n  quotaBackendBytes: 8589934592\n")
    result = validate(str(labels), str(quota))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"{labels}: podLabels.app.kubernetes.io/name: the chart sets this selector label "
        "itself, and a second value renders a duplicate key that can detach the pods from the "
        "StatefulSet, Services, PodDisruptionBudget and NetworkPolicy (remove it from "
        "podLabels; label your pods with keys of your own)\n"
        f"{quota}: persistence.size: 8Gi is too small for config.quotaBackendBytes 8589934592 "
        "(8 GiB): the database grows up to the quota, a defragmentation or a snapshot sent by "
        "the leader writes a second copy beside it, and the WAL and snapshot files need room "
        "too, so a data claim needs twice the quota plus 1 GiB (17 GiB) (raise persistence.size "
        "to at least 17Gi, or lower config.quotaBackendBytes)\n"
    )
