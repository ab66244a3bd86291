"""The sandbox runs the etcd release an image's tag names, and refuses a tag it cannot run.

Binaries come from `--bin-dir` (or ETCD_CHART_BIN_DIR), then the cache ci/install-tools.sh fills,
then PATH. A refusal comes before anything starts: a clear message, a non-zero exit, nothing
left running.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from etcd_chart.helm import find_tool
from etcd_chart.sandbox.client import Sandbox
from etcd_chart.sandbox.controlplane import find_binaries
from etcd_versions import etcd_program, etcd_release
from membership import server_version
from strays import subnet_of

pytestmark = pytest.mark.e2e

CLI = Callable[..., subprocess.CompletedProcess[str]]
NoStrays = Callable[[Path, "str | None"], None]
WHERE = "StatefulSet default/etcd: container etcd"


def assert_refused_cleanly(
    result: subprocess.CompletedProcess[str], state: Path, code: int, no_strays: NoStrays
) -> str:
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    assert not state.exists(), "a failed up left the state dir it created"
    no_strays(state, subnet_of(state))
    return result.stderr


def test_a_tag_without_binaries_is_refused_before_anything_starts(
    tmp_path: Path, chart_dir: Path, sandbox_cli: CLI, no_strays: NoStrays
) -> None:
    state = tmp_path / "state"
    result = sandbox_cli(
        "up", str(chart_dir), "--set", "image.tag=v3.4.99", "--state-dir", str(state)
    )
    stderr = assert_refused_cleanly(result, state, 2, no_strays)
    image = "gcr.io/etcd-development/etcd:v3.4.99"
    assert stderr.startswith(
        f"etcd-chart sandbox: up failed; stopped everything and removed {state}:\n"
        f"etcd/templates/statefulset.yaml: {WHERE}: image {image!r} runs etcd 3.4.99, and this "
        "machine has no etcd 3.4.99 "
    ), stderr
    for minor in ("3.5", "3.6", "3.7"):
        assert f"; {etcd_release(minor)} in " in stderr or f"found {etcd_release(minor)} in " in (
            stderr
        )
    assert (
        "Pass `--bin-dir DIR` (or set ETCD_CHART_BIN_DIR) for a directory holding "
        "v3.4.99/etcd, v3.4.99/etcdctl and v3.4.99/etcdutl, or put etcd 3.4.99 on PATH; in this "
        "clone, `bash "
    ) in stderr


@pytest.mark.parametrize(
    ("values", "said"),
    [
        (["--set", "image.tag=latest"], "has tag 'latest'"),
        (["--set", "image.digest=sha256:" + "c" * 64], "has only a digest"),
    ],
    ids=["latest", "digest-only"],
)
def test_a_tag_that_is_not_a_version_is_refused(
    tmp_path: Path,
    chart_dir: Path,
    sandbox_cli: CLI,
    no_strays: NoStrays,
    values: list[str],
    said: str,
) -> None:
    state = tmp_path / "state"
    result = sandbox_cli("up", str(chart_dir), *values, "--state-dir", str(state))
    stderr = assert_refused_cleanly(result, state, 1, no_strays)
    assert f"{WHERE}: image 'gcr.io/etcd-development/etcd" in stderr
    assert (
        f"{said}, which names no etcd version: the sandbox runs the etcd release an image's tag "
        "names, so give it a version tag such as v3.6.16 (with the chart: image.tag, and "
        "image.digest empty)"
    ) in stderr


def test_a_bin_dir_that_does_not_exist_is_refused(
    tmp_path: Path, chart_dir: Path, sandbox_cli: CLI, no_strays: NoStrays
) -> None:
    state = tmp_path / "state"
    missing = tmp_path / "no-such-dir"
    result = sandbox_cli("up", str(chart_dir), "--bin-dir", str(missing), "--state-dir", str(state))
    stderr = assert_refused_cleanly(result, state, 1, no_strays)
    assert stderr == f"etcd-chart sandbox: --bin-dir {missing}: not a directory\n"


def test_the_bin_dir_alone_can_supply_the_binaries(
    tmp_path: Path, chart_dir: Path, sandbox_cli: CLI, no_strays: NoStrays
) -> None:
    """No cache and no etcd on PATH: only --bin-dir has etcd 3.6 (and the control plane's
    programs, as envtest's asset directory does), and the pod runs it."""
    six = etcd_release("3.6")
    bin_dir = tmp_path / "bin"
    (bin_dir / f"v{six}").mkdir(parents=True)
    for program in ("etcd", "etcdctl", "etcdutl"):
        (bin_dir / f"v{six}" / program).symlink_to(etcd_program(six, program))
    plane = find_binaries(etcd_program(six, "etcd"))
    for program in (plane.apiserver, plane.controller_manager, plane.scheduler):
        (bin_dir / Path(program).name).symlink_to(program)
    helm_only = tmp_path / "helm-only"
    helm_only.mkdir()
    (helm_only / "helm4").symlink_to(find_tool("helm4"))
    (tmp_path / "empty-cache" / "bin").mkdir(parents=True)
    env = {
        **os.environ,
        "ETCD_CHART_CACHE": str(tmp_path / "empty-cache"),
        "PATH": f"{helm_only}:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    env.pop("ETCD_CHART_BIN_DIR", None)
    sb = Sandbox(tmp_path / "state", env=env)
    chart = [str(chart_dir), "--set", "replicas=1"]
    try:
        sb.up(*chart, "--set", f"image.tag=v{six}", "--bin-dir", str(bin_dir), timeout=240)
        assert server_version(sb, "etcd-0") == six
        seven = etcd_release("3.7")
        refused = sb.upgrade(*chart, "--set", f"image.tag=v{seven}", check=False)
        assert refused.returncode == 2, refused.stderr
        assert (
            f"runs etcd {seven}, and this machine has no etcd {seven} (looked in "
            f"{bin_dir}/v{seven}/, {tmp_path / 'empty-cache'}/etcd/v{seven}/ and PATH; found "
            f"{six} in {bin_dir})"
        ) in refused.stderr
        assert server_version(sb, "etcd-0") == six, "a refused upgrade changed the running member"
    finally:
        subnet = subnet_of(sb.state_dir)
        sb.down(purge=True)
        no_strays(sb.state_dir, subnet)
