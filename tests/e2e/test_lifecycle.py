"""Membership that takes care of itself: the seven lifecycle scenarios, under a running writer.

Each scenario installs the chart with real Helm (Helm 4 unless a test names another) into the
sandbox's real control plane (kube-apiserver, kube-controller-manager, kube-scheduler; the
sandbox's process kubelet runs the pods with real etcd and the member agent; Helm runs the
scale-down hook), starts a background writer that records every acknowledged write, changes or
breaks the cluster through the real objects, and then requires that

- the member list equals the StatefulSet's pods, every member votes and has started, and
  `etcdctl endpoint health --cluster` passes on all of them;
- every acknowledged write reads back, through every member.

The longest write outage of each step is printed in the terminal summary. Before a scale-down
the writer is pointed at the members that stay, as a client behind the client Service would be
once the removed pods stop being endpoints.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from etcd_chart.helm import find_tool
from etcd_chart.sandbox.client import Sandbox, SandboxCommandError
from etcd_versions import ETCD_MINORS, etcd_release
from ledger import EtcdGateway
from membership import (
    Writer,
    assert_nothing_lost,
    client_tls,
    cluster_id,
    endpoints,
    leader,
    members,
    pod_names,
    server_version,
    settle,
    statefulset_pods,
    wait_converged,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def restarts(sb: Sandbox, pod: str) -> int:
    return int(next(p for p in sb.status()["pods"] if p["name"] == pod)["restarts"])


def scale_3_5_3_1_3(sb: Sandbox, chart_dir: Path, writer: Writer, *render: str) -> None:
    first = wait_converged(sb, 3)
    ledger = writer(sb)
    ids = first
    for before, after in ((3, 5), (5, 3), (3, 1), (1, 3)):
        if after < before:
            ledger.set_endpoints(endpoints(sb.status(), pod_names(after)))
        sb.upgrade(str(chart_dir), *render, "--set", f"replicas={after}", timeout=240)
        now = settle(sb, ledger, after, f"1: scale {before} -> {after}")
        kept = pod_names(min(before, after))
        assert {n: now[n] for n in kept} == {n: ids[n] for n in kept}, "a kept member changed"
        ids = now
    assert_nothing_lost(sb, ledger, 3)


# Every etcd release and every Helm binary runs the whole scenario once, each release with one
# binary: the release decides how members join and leave, the binary whether the scale-down hook
# passes through the post-renderer (Helm 3 passes no hooks), and neither depends on the other.
# Helm 4, the main path, goes with the default image's release.
HELM_FOR_RELEASE = {"3.5": "helm3", "3.6": "helm3-newest", "3.7": "helm4"}


@pytest.mark.parametrize(
    ("minor", "helm"),
    [(minor, HELM_FOR_RELEASE[minor]) for minor in ETCD_MINORS],
    ids=[f"etcd{minor}-{HELM_FOR_RELEASE[minor]}" for minor in ETCD_MINORS],
)
def test_1_scale_3_to_5_to_3_to_1_to_3(
    sandbox: Callable[..., Sandbox], chart_dir: Path, writer: Writer, minor: str, helm: str
) -> None:
    version = etcd_release(minor)
    render = ("--set", f"image.tag=v{version}", "--helm", find_tool(helm))
    sb = sandbox(str(chart_dir), *render)
    wait_converged(sb, 3)
    assert server_version(sb, "etcd-0") == version
    scale_3_5_3_1_3(sb, chart_dir, writer, *render)


def test_2_kill_a_follower_then_the_leader(
    sandbox: Callable[..., Sandbox], chart_dir: Path, writer: Writer
) -> None:
    sb = sandbox(str(chart_dir))
    ids = wait_converged(sb, 3)
    ledger = writer(sb)
    first_leader = leader(sb, "etcd-0")
    follower = next(p for p in pod_names(3) if p != first_leader)
    for victim, role in ((follower, "follower"), (first_leader, "leader")):
        if role == "leader":
            victim = leader(sb, "etcd-0")
        count = restarts(sb, victim)
        sb.kill(victim, "KILL")
        wait_for(lambda v=victim, c=count: restarts(sb, v) > c, f"{victim} to be restarted")
        assert settle(sb, ledger, 3, f"2: SIGKILL the {role} ({victim})") == ids
    assert leader(sb, "etcd-0") != first_leader or restarts(sb, first_leader) >= 1
    assert_nothing_lost(sb, ledger, 3)


def test_3_rolling_restart_under_load(
    sandbox: Callable[..., Sandbox], chart_dir: Path, writer: Writer
) -> None:
    sb = sandbox(str(chart_dir))
    ids = wait_converged(sb, 3)
    revisions = {p["name"]: p["revision"] for p in sb.status()["pods"]}
    ledger = writer(sb)
    sb.upgrade(str(chart_dir), "--set", "podAnnotations.rollout=second", timeout=240)
    assert settle(sb, ledger, 3, "3: rolling restart (template change)") == ids
    after = {p["name"]: p["revision"] for p in sb.status()["pods"] if p["name"] in ids}
    assert all(after[name] != revisions[name] for name in ids), "not every pod was replaced"
    assert len(set(after.values())) == 1
    assert_nothing_lost(sb, ledger, 3)


def test_4_lose_one_volume(
    sandbox: Callable[..., Sandbox], chart_dir: Path, writer: Writer
) -> None:
    sb = sandbox(str(chart_dir))
    ids = wait_converged(sb, 3)
    ledger = writer(sb)
    sb.lose_volume("etcd-1")
    now = settle(sb, ledger, 3, "4: lose etcd-1's volume")
    assert now["etcd-1"] != ids["etcd-1"], "etcd-1 should have rejoined with a new identity"
    assert {n: now[n] for n in ("etcd-0", "etcd-2")} == {n: ids[n] for n in ("etcd-0", "etcd-2")}
    assert_nothing_lost(sb, ledger, 3)


def test_5_lose_pod_0_volume_in_a_full_outage(
    sandbox: Callable[..., Sandbox], chart_dir: Path, writer: Writer
) -> None:
    sb = sandbox(str(chart_dir))
    ids = wait_converged(sb, 3)
    original_cluster = cluster_id(sb, "etcd-1")
    ledger = writer(sb)
    time.sleep(2)
    ledger.stop()
    sb.stop_all()
    sb.lose_volume("etcd-0")
    # etcd-0 comes back first and alone: with the cluster record present it must not
    # bootstrap a new, empty cluster, however long its peers stay away.
    sb.stop("etcd-1")
    sb.stop("etcd-2")
    sb.start_all()
    seen_ids = ClusterIdProbe(sb)
    with seen_ids:
        time.sleep(10)
        alone = next(p for p in sb.status()["pods"] if p["name"] == "etcd-0")
        assert not alone["ready"], "etcd-0 became ready with no peers: a second cluster"
        assert seen_ids.answers == 0, "something answered on etcd-0's client port"
        sb.start("etcd-1")
        sb.start("etcd-2")
        wait_for(lambda: statefulset_pods(sb) == pod_names(3), "the peers' pods to exist")
        # A second writer measures how long after the peers' return writes are accepted again.
        recovery = writer(sb)
        now = settle(sb, recovery, 3, "5: full outage, etcd-0's volume lost (from peers' return)")
    assert seen_ids.cluster_ids == {original_cluster}
    assert now["etcd-0"] != ids["etcd-0"]
    assert {n: now[n] for n in ("etcd-1", "etcd-2")} == {n: ids[n] for n in ("etcd-1", "etcd-2")}
    for endpoint in endpoints(sb.status(), pod_names(3)):
        assert ledger.verify(endpoint) == [], f"acknowledged writes missing on {endpoint}"
    assert_nothing_lost(sb, recovery, 3)


class ClusterIdProbe:
    """Polls every member's status in the background and collects the cluster IDs it sees."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.cluster_ids: set[int] = set()
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ClusterIdProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        status = self.sb.status()
        gateway = EtcdGateway(client_tls(status), timeout=0.5)
        while not self._stop.is_set():
            for endpoint in endpoints(self.sb.status(), pod_names(3)):
                try:
                    answer = gateway.call(endpoint, "/v3/maintenance/status", {})
                except OSError:
                    continue
                header = answer.get("header") or {}
                self.cluster_ids.add(int(header.get("cluster_id", 0)))  # type: ignore[union-attr]
                if endpoint.server_name.startswith("etcd-0."):
                    self.answers += 1
            self._stop.wait(0.2)


def etcd_container(sb: Sandbox, pod: str) -> dict[str, Any]:
    entry = next(p for p in sb.status()["pods"] if p["name"] == pod)
    return dict(entry["containers"]["etcd"])


def test_members_back_minutes_apart_after_a_full_outage_are_not_killed_by_startup_probes(
    sandbox: Callable[..., Sandbox], chart_dir: Path, writer: Writer
) -> None:
    """Issue 13, trap 1: startup and liveness must not need quorum. The startup budget is cut to
    6 s (3 probes 2 s apart), so 15 s between members stands for minutes with the default 300 s.
    A member that comes back alone after a full outage cannot be ready (no quorum), yet it keeps
    running, started, with no restart, until its peers return; then all are Ready and no
    acknowledged write is lost."""
    budget = ["probes.startup.periodSeconds=2", "probes.startup.failureThreshold=3"]
    sb = sandbox(str(chart_dir), "--set", ",".join(budget))
    ids = wait_converged(sb, 3)
    ledger = writer(sb)
    time.sleep(2)
    ledger.stop()
    sb.stop_all()
    sb.stop("etcd-1")
    sb.stop("etcd-2")
    sb.start_all()
    started: dict[str, int] = {}

    def back(pod: str) -> None:
        wait_for(lambda: etcd_container(sb, pod)["state"] == "running", f"{pod}'s etcd to run")
        started[pod] = restarts(sb, pod)

    back("etcd-0")
    time.sleep(15)  # more than twice the startup budget, alone
    alone = etcd_container(sb, "etcd-0")
    assert (alone["state"], alone["started"], alone["ready"]) == ("running", True, False), alone
    assert restarts(sb, "etcd-0") == started["etcd-0"], "etcd-0 was restarted while alone"

    sb.start("etcd-1")  # a quorum again: both become Ready
    back("etcd-1")
    wait_for(lambda: etcd_container(sb, "etcd-1")["ready"], "etcd-1 to be ready")
    time.sleep(15)  # etcd-2 stays away past its budget too
    sb.start("etcd-2")
    back("etcd-2")
    now = settle(sb, writer(sb), 3, "full outage, members back 15 s apart (from etcd-2's return)")
    assert now == ids, "a member changed identity"
    assert {pod: restarts(sb, pod) for pod in pod_names(3)} == started, "a member was restarted"
    for endpoint in endpoints(sb.status(), pod_names(3)):
        assert ledger.verify(endpoint) == [], f"acknowledged writes missing on {endpoint}"


def test_6_scale_down_then_up_over_old_volumes(
    sandbox: Callable[..., Sandbox], chart_dir: Path, writer: Writer
) -> None:
    sb = sandbox(str(chart_dir), "--set", "replicas=5")
    first = wait_converged(sb, 5)
    ledger = writer(sb)
    ledger.set_endpoints(endpoints(sb.status(), pod_names(3)))
    sb.upgrade(str(chart_dir), "--set", "replicas=3", timeout=240)
    settle(sb, ledger, 3, "6: scale 5 -> 3")
    sb.upgrade(str(chart_dir), "--set", "replicas=5", timeout=240)
    now = settle(sb, ledger, 5, "6: scale 3 -> 5 over the removed members' volumes")
    for pod in ("etcd-3", "etcd-4"):
        assert now[pod] != first[pod], f"{pod} should have joined afresh"
        assert "moved data to" in sb.logs(pod, "prepare"), f"{pod}: stale data not moved aside"
    assert_nothing_lost(sb, ledger, 5)


def test_7_scale_3_to_5_with_a_member_down(
    sandbox: Callable[..., Sandbox], chart_dir: Path, writer: Writer
) -> None:
    sb = sandbox(str(chart_dir))
    ids = wait_converged(sb, 3)
    ledger = writer(sb)
    sb.stop("etcd-2")
    ledger.set_endpoints(endpoints(sb.status(), ["etcd-0", "etcd-1"]))
    outcome: dict[str, object] = {}

    def upgrade() -> None:
        outcome["result"] = sb.upgrade(
            str(chart_dir), "--set", "replicas=5", check=False, timeout=300
        )

    upgrading = threading.Thread(target=upgrade)
    upgrading.start()

    def prepare_log() -> str:
        try:
            return sb.logs("etcd-3", "prepare")
        except SandboxCommandError:  # the pod or its first log line is not there yet
            return ""

    try:
        # etcd refuses to add even a learner while a voter is down (strict reconfig check),
        # so the new pods wait in their init container and the membership stays as it was.
        wait_for(lambda: "unhealthy cluster" in prepare_log(), "etcd-3's prepare refused", 120)
        time.sleep(5)
        acknowledged = len(ledger.acknowledged)
        time.sleep(2)
        assert len(ledger.acknowledged) > acknowledged, "writes stopped while etcd-2 was down"
        assert upgrading.is_alive(), "the upgrade finished with a member still down"
        listed = members(sb, "etcd-0")
        assert sorted(m["name"] for m in listed) == ["etcd-0", "etcd-1", "etcd-2"]
    finally:
        sb.start("etcd-2")
        upgrading.join(timeout=330)
    result = outcome["result"]
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    now = settle(sb, ledger, 5, "7: scale 3 -> 5 with etcd-2 down for 20 s")
    assert {n: now[n] for n in ids} == ids
    assert_nothing_lost(sb, ledger, 5)
