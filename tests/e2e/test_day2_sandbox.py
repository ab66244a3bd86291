"""Day-2 operations in the sandbox, on the real control plane: the defragmentation CronJob's Job,
and version upgrades under the write ledger (3.5 -> 3.6 -> 3.7 with the post-renderer's refusals
on the way), each step's longest write outage printed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from etcd_chart.sandbox.client import Sandbox
from etcd_versions import etcd_release
from kube import sandbox_json, sandbox_kubectl
from membership import (
    Writer,
    assert_nothing_lost,
    leader,
    pod_names,
    server_version,
    settle,
    wait_converged,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEFRAGMENTING = re.compile(
    r"^member-agent defrag: (\S+) \((leader|follower)\) .* -> defragmenting$"
)


def job_finished(sb: Sandbox, name: str) -> str:
    """ "Complete" or "Failed" once the Job has finished, else ""."""
    job = sandbox_json(sb, "get", "job", name)
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return ""


def test_the_defrag_cronjobs_job_defragments_every_member_leader_last(
    sandbox: Callable[..., Sandbox], chart_dir: Path, writer: Writer
) -> None:
    sb = sandbox(
        str(chart_dir),
        "--set",
        "defrag.enabled=true,defrag.thresholdPercent=0,defrag.minDbSizeBytes=0",
    )
    ids = wait_converged(sb, 3)
    ledger = writer(sb)
    first_leader = leader(sb, "etcd-0")
    sandbox_kubectl(sb, "create", "job", "--from=cronjob/etcd-defrag", "defrag-now")
    wait_for(lambda: job_finished(sb, "defrag-now") != "", "the defrag Job to finish", 120)
    (pod,) = sandbox_json(sb, "get", "pods", "-l", "job-name=defrag-now")["items"]
    log = sb.logs(pod["metadata"]["name"]).splitlines()
    assert job_finished(sb, "defrag-now") == "Complete", log
    order = [m.groups() for m in map(DEFRAGMENTING.match, log) if m]
    assert [role for _, role in order] == ["follower", "follower", "leader"], log
    assert order[-1][0] == first_leader, log
    assert log[-1].endswith("-> done: 3 of 3 members defragmented"), log
    assert settle(sb, ledger, 3, "defrag Job (3 members, leader last)") == ids
    assert_nothing_lost(sb, ledger, 3)


def versions(sb: Sandbox) -> dict[str, str]:
    return {pod: server_version(sb, pod) for pod in pod_names(3)}


def test_upgrades_3_5_to_3_6_to_3_7_under_the_ledger_with_the_refusals_on_the_way(
    sandbox: Callable[..., Sandbox], chart_dir: Path, writer: Writer
) -> None:
    """etcd's supported path, one minor at a time from a 3.5 patch it allows (3.5.26 or later),
    each step a plain `helm upgrade --set image.tag=...` rolling the members under one ledger;
    skipping 3.6 and going back are refused on a live cluster and change no pod."""
    five, six, seven = (etcd_release(minor) for minor in ("3.5", "3.6", "3.7"))
    assert int(five.split(".")[2]) >= 26, f"etcd {five}: ci/install-tools.sh installs 3.5.26+"
    chart = str(chart_dir)
    sb = sandbox(chart, "--set", f"image.tag=v{five}")
    ids = wait_converged(sb, 3)
    assert versions(sb) == dict.fromkeys(pod_names(3), five)
    ledger = writer(sb)

    skip = sb.upgrade(chart, "--set", f"image.tag=v{seven}", check=False)
    assert skip.returncode != 0, skip.stderr
    assert f"changes etcd from {five} to {seven}, skipping 3.6" in skip.stderr, skip.stderr
    assert versions(sb) == dict.fromkeys(pod_names(3), five), "a refused upgrade changed pods"

    sb.upgrade(chart, "--set", f"image.tag=v{six}", timeout=300)
    assert settle(sb, ledger, 3, f"upgrade {five} -> {six}") == ids
    assert versions(sb) == dict.fromkeys(pod_names(3), six)

    back = sb.upgrade(chart, "--set", f"image.tag=v{five}", check=False)
    assert back.returncode != 0, back.stderr
    assert f"changes etcd from {six} to {five}, a downgrade of the minor version" in back.stderr
    assert versions(sb) == dict.fromkeys(pod_names(3), six), "a refused downgrade changed pods"

    # A cluster born on 3.5 keeps 3.5's raft entries in its WAL until a member takes a raft
    # snapshot on 3.6 (every config.snapshotCount entries, 10,000 by default), and etcd 3.7.3
    # panics replaying them ("unmarshal should never fail"). README's step: one rolling restart
    # on 3.6 with snapshotCount 1, so each member snapshots as soon as it applies an entry.
    sb.upgrade(chart, "--set", f"image.tag=v{six},config.snapshotCount=1", timeout=300)
    assert settle(sb, ledger, 3, f"{six} restarted with snapshotCount 1") == ids
    sb.upgrade(chart, "--set", f"image.tag=v{seven}", timeout=300)
    assert settle(sb, ledger, 3, f"upgrade {six} -> {seven} (cluster created on {five})") == ids
    assert versions(sb) == dict.fromkeys(pod_names(3), seven)
    assert_nothing_lost(sb, ledger, 3)
