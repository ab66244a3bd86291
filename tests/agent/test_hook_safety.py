"""The scale-down hook and members stuck for good (issue 14, items 3-7), against real etcd.

Same harness as test_against_etcd.py: pods as processes on their own loopback address and name,
the real API server for the cluster record, the StatefulSet and the pods; the hook runs as the
chart's scale-down ServiceAccount.
"""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_harness import RECORD, STS, TOKEN, Release

pytestmark = pytest.mark.e2e

ID = r"[0-9a-f]+"
WAY_OUT = (
    "to go on without the hook: `helm upgrade --no-hooks` (this upgrade only) or"
    " scaleDown.enabled=false (every later upgrade): either way the pods above the new count go"
    " while still members, and stay in the member list as down voters that count against quorum"
    " until removed by hand (etcdctl member remove)"
)


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.splitlines()


def ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    return lines(result)


def bootstrap(release: Release, replicas: int) -> Path:
    """The bootstrap pods prepare, start, and pod 0 writes the cluster record."""
    template = release.template(replicas)
    release.bootstrap(template, replicas)
    ok(release.agent(release.pods[0], "watch", "--once", template=template))
    assert release.get_object("v1", "configmaps", RECORD) is not None
    return template


# --- item 3 ------------------------------------------------------------------------------------


def test_hook_with_no_record_exits_0_before_loading_the_absent_tls_files(
    release_factory: Callable[..., Release], tmp_path: Path
) -> None:
    """Argo CD's first sync with cert-manager: the agent Secret is optional and not there yet."""
    release = release_factory(pods=3, tls=True)
    missing = tmp_path / "not-issued-yet"
    files = {
        "ETCD_AGENT_CACERT": str(missing / "ca.crt"),
        "ETCD_AGENT_CERT": str(missing / "tls.crt"),
        "ETCD_AGENT_KEY": str(missing / "tls.key"),
    }
    result = release.agent(release.pods[0], "scale-down", "--replicas", "3", **files)
    assert ok(result) == [
        "member-agent scale-down: replicas=3 record=absent -> nothing to do (no cluster has"
        " been created yet)"
    ]

    # With the record turned off: the member pods mount the same certificate (not optional),
    # so none of them runs without it either.
    result = release.agent(
        release.pods[0], "scale-down", "--replicas", "3", ETCD_AGENT_RECORD="", **files
    )
    assert ok(result) == [
        "member-agent scale-down: replicas=3 record=disabled tls=not-issued -> nothing to do: the"
        f" agent certificate ({missing}/ca.crt, {missing}/tls.crt, {missing}/tls.key) is not"
        " issued yet, and no member pod starts without it"
    ]

    # With a record the files are needed, and their absence is an error that names them.
    release.put_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": RECORD},
            "data": {"clusterID": "1234", "token": TOKEN},
        }
    )
    result = release.agent(release.pods[0], "scale-down", "--replicas", "3", **files)
    assert result.returncode == 1
    (line,) = lines(result)
    assert line.startswith(
        f"member-agent scale-down: error: cannot load the TLS files ({missing}/ca.crt,"
    ), line


# --- item 4 ------------------------------------------------------------------------------------


def test_hook_after_a_full_outage_refuses_only_a_real_scale_down(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory(pods=5)
    bootstrap(release, 3)
    p0 = release.pods[0]
    release.put(p0, "ledger/1", "acknowledged")
    for pod in release.pods[:3]:
        release.stop_etcd(pod)
    unreachable = "cluster=unreachable record=present"

    # The upgrade that repairs a full outage keeps (or raises) the replica count: it passes.
    release.put_statefulset(3)
    for replicas in ("3", "5"):
        out = ok(release.agent(p0, "scale-down", "--replicas", replicas))
        assert out == [
            f"member-agent scale-down: replicas={replicas} {unreachable} statefulset=3 -> nothing"
            f" to remove: not a scale-down (the StatefulSet has 3 replicas, the upgrade asks for"
            f" {replicas}); the upgrade goes on and may bring the members back"
        ], out

    # A re-created Argo CD Application: the StatefulSet is gone, the record kept.
    assert release.delete_object("apps/v1", "statefulsets", STS)
    out = ok(release.agent(p0, "scale-down", "--replicas", "3"))
    assert out == [
        f"member-agent scale-down: replicas=3 {unreachable} statefulset=absent -> nothing to"
        " remove: no StatefulSet, so no member pod runs; the members come back on their data"
        " when it is created"
    ], out

    # A real scale-down with no member answering: refused, and the message says how out.
    release.put_statefulset(5)
    result = release.agent(p0, "scale-down", "--replicas", "3")
    assert result.returncode == 1, result.stderr
    (line,) = lines(result)
    assert line.startswith(
        f"member-agent scale-down: replicas=3 {unreachable} statefulset=5 -> refusing: a scale-down"
        " from 5 to 3 needs a healthy cluster to remove members from, and no member answers"
        " (asked: etcd-0: "
    ), line
    assert line.endswith(f"); {WAY_OUT}"), line

    # The cluster itself is untouched: it comes back whole.
    for pod in release.pods[:3]:
        release.start_etcd(pod)
    release.wait_healthy(p0)
    assert release.get(p0, "ledger/1") == "acknowledged"
    assert len(release.members(p0)) == 3


# --- item 7 ------------------------------------------------------------------------------------


def add_stuck_learner(release: Release, ordinal: int) -> str:
    """A learner for pod `ordinal` that never starts (its pod cannot be scheduled, say)."""
    added: list[str] = []

    def add() -> bool:
        # etcd refuses member changes for 5 s after its voters connect ("unhealthy cluster").
        try:
            answer = release.call(
                release.pods[0],
                "/v3/cluster/member/add",
                {"peerURLs": [release.pods[ordinal].peer_url], "isLearner": True},
            )
        except urllib.error.HTTPError as err:
            assert err.code == 503, err
            return False
        added.append(format(int(answer["member"]["ID"]), "x"))
        return True

    release.wait_for("the learner added", add)
    return added[0]


def test_prepare_waits_a_bounded_time_for_a_stuck_learner_and_says_how_to_remove_it(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory(pods=5)
    bootstrap(release, 3)
    learner = add_stuck_learner(release, 3)
    template = release.template(5)
    result = release.agent(
        release.pods[4], "prepare", "--learner-wait", "4", "--timeout", "60", template=template
    )
    assert result.returncode == 2, result.stderr
    out = lines(result)
    for line in out[:-1]:
        assert "another member change is in flight: etcd-3 (learner)" in line, out
    assert re.fullmatch(
        r"member-agent prepare: data=absent cluster=reachable\(4 members, leader \w+\) listed=no"
        rf" -> giving up after [0-9.]+s \(--learner-wait 4\): learner etcd-3 \({learner}\) has"
        r" not become a voter \(never started\); every later member change waits for it\. If its"
        r" pod cannot run or catch up, remove it: `helm upgrade` with replicas=3 \(the scale-down"
        r" hook removes members above the new count, learners included\), or etcdctl member"
        rf" remove {learner}",
        out[-1],
    ), out
    assert not release.pods[4].output.exists()


def test_the_scale_down_hook_removes_a_stuck_learner(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory(pods=5)
    bootstrap(release, 3)
    learner = add_stuck_learner(release, 3)
    out = ok(release.agent(release.pods[0], "scale-down", "--replicas", "3"))
    assert re.search(rf"-> removed member etcd-3 \({learner}\)$", out[-2]), out
    assert out[-1].endswith("-> nothing to remove (members: etcd-0, etcd-1, etcd-2)"), out
    assert sorted(m["name"] for m in release.members(release.pods[0])) == [
        "etcd-0",
        "etcd-1",
        "etcd-2",
    ]


# --- item 6 ------------------------------------------------------------------------------------


def test_a_member_under_a_new_peer_port_updates_its_peer_url_in_place(
    release_factory: Callable[..., Release],
) -> None:
    """`ports.peer` changed on a live release: each pod restarts under the new address in turn."""
    release = release_factory(pods=3)
    template = bootstrap(release, 3)
    p0 = release.pods[0]
    release.put(p0, "ledger/1", "acknowledged")
    moved = release.root / "template-3-peer-2381.json"
    moved.write_text(template.read_text().replace(":2380", ":2381"))
    for pod in reversed(release.pods):  # a rolling update: highest ordinal first
        old = next(m for m in release.members(p0) if m["name"] == pod.name)
        release.stop_etcd(pod, signal.SIGTERM)
        release.new_pod(pod)
        out = ok(release.agent(pod, "prepare", "--timeout", "60", template=moved))
        new_url = pod.peer_url.replace(":2380", ":2381")
        assert re.fullmatch(
            r"member-agent prepare: data=present cluster=reachable\(3 members, leader \w+\)"
            rf" listed=yes -> updated the peer URL of member {pod.name}"
            rf" \({format(int(old['ID']), 'x')}\) from {re.escape(pod.peer_url)} to"
            rf" {re.escape(new_url)} \(same name, data present: the same member under a new"
            rf" address\), starting on the existing data; wrote {re.escape(str(pod.output))}",
            out[-1],
        ), out
        assert not list(pod.volume.glob("data.removed-*"))
        release.start_etcd(pod)
        release.wait_healthy(pod)
        now = next(m for m in release.members(p0) if m["name"] == pod.name)
        assert now["ID"] == old["ID"] and now["peerURLs"] == [new_url]
        release.put(pod, f"ledger/{pod.name}", "after")
    assert sorted(m["name"] for m in release.members(p0)) == ["etcd-0", "etcd-1", "etcd-2"]
    for pod in release.pods:
        assert release.get(pod, "ledger/1") == "acknowledged"
        assert release.get(pod, "ledger/etcd-0") == "after"


# --- item 5: a member removed while its pod stays ---------------------------------------------


def test_a_pod_whose_member_was_removed_is_recreated_and_rejoins(
    release_factory: Callable[..., Release],
) -> None:
    """A scale-down hook removed etcd-3 and then ran out of time: the StatefulSet still has 4
    replicas, etcd-3's etcd exits at once on every restart and `prepare` never runs again."""
    release = release_factory(pods=5)
    bootstrap(release, 3)
    p0, p3 = release.pods[0], release.pods[3]
    template4 = release.template(4)
    ok(release.agent(p3, "prepare", "--timeout", "60", template=template4))
    release.start_etcd(p3)
    release.wait_started(p3, p0)
    ok(release.agent(p3, "watch", "--once", "--timeout", "60", template=template4))
    ok(release.agent(p0, "scale-down", "--replicas", "3"))
    assert p3.etcd is not None and p3.etcd.wait(timeout=30) == 0  # removed: etcd exits 0
    release.put_statefulset(4)
    release.put_pod("etcd-3")

    # While the StatefulSet is scaling down (3 replicas) the pod is left alone.
    release.put_statefulset(3)
    result = release.agent(
        p3, "watch", "--once", "--timeout", "6", "--rejoin-after", "1", template=template4
    )
    assert result.returncode == 2, result.stderr
    out = lines(result)
    assert re.fullmatch(
        r"member-agent watch: cluster=reachable\(3 members, leader \w+\) member=absent -> this"
        r" member was removed from the cluster; the StatefulSet has 3 replicas, so etcd-3 is on"
        r" its way out: waiting; giving up \(--timeout\)",
        out[-1],
    ), out
    assert release.get_object("v1", "pods", "etcd-3") is not None

    # The StatefulSet keeps etcd-3: after --rejoin-after the agent deletes its own pod, and
    # the recreated pod's prepare moves the old data aside and joins again.
    release.put_statefulset(4)
    result = release.agent(
        p3, "watch", "--once", "--timeout", "30", "--rejoin-after", "2", template=template4
    )
    assert result.returncode == 2, result.stderr
    out = lines(result)
    assert re.fullmatch(
        r"member-agent watch: cluster=reachable\(3 members, leader \w+\) member=absent -> this"
        r" member was removed from the cluster, and etcd exits at once on every restart; the"
        r" StatefulSet still has 4 replicas: deleting pod etcd-3 once this has lasted 2s, so that"
        r" it is recreated and its prepare joins again",
        out[0],
    ), out
    assert any(
        line.endswith(
            "member=absent -> deleted pod etcd-3 so that it is recreated: its prepare moves the"
            " removed member's data aside and joins again"
        )
        for line in out
    ), out
    assert release.get_object("v1", "pods", "etcd-3") is None
    release.new_pod(p3)
    out = ok(release.agent(p3, "prepare", "--timeout", "60", template=template4))
    assert re.search(r"listed=no -> moved data to \S+\.removed-\S+, added as learner", out[-1]), out
    release.start_etcd(p3)
    release.wait_started(p3, p0)
    ok(release.agent(p3, "watch", "--once", "--timeout", "60", template=template4))
    assert sorted(m["name"] for m in release.members(p0)) == [
        "etcd-0",
        "etcd-1",
        "etcd-2",
        "etcd-3",
    ]
