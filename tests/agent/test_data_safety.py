"""Issue 14, items 1, 2 and 9 against real etcd: a lost WAL claim in a full outage, a joining
member whose first start failed, and the cluster record (re-created, compared in `prepare`).

Every scenario keeps the rules: no acknowledged write is ever read back as missing, and no
member is started with `initial-cluster-state: new` on a cluster that exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_harness import RECORD, TOKEN, Pod, Release

pytestmark = pytest.mark.e2e


def ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def state_of(pod: Pod) -> str:
    return str(json.loads(pod.output.read_text())["initial-cluster-state"])


def wal_volume(pod: Pod) -> Path:
    """The pod's second claim, mounted where the chart mounts the WAL volume."""
    return pod.dir / "volume-wal"


def template_with_wal_claim(release: Release, replicas: int) -> Path:
    """The chart's template with persistence.wal.enabled: `wal-dir` on its own claim."""
    path = release.template(replicas)
    config = json.loads(path.read_text())
    config["wal-dir"] = "$(POD_VOLUME)-wal/wal"
    target = release.root / f"template-{replicas}-wal.json"
    target.write_text(json.dumps(config, indent=2))
    return target


def bootstrap(release: Release, template: Path, replicas: int) -> None:
    """The bootstrap pods prepare and start, and pod 0 writes the cluster record."""
    release.bootstrap(template, replicas)
    ok(release.agent(release.pods[0], "watch", "--once", template=template))


def read_back(release: Release, pod: Pod, key: str) -> str | None:
    """A linearizable read: the value, None when the member answers "no such key"."""
    return release.get(pod, key)


def answers_missing(release: Release, pod: Pod, key: str) -> bool:
    """True only when `pod` answers that `key` does not exist (no answer is not "missing")."""
    try:
        return release.call(pod, "/v3/kv/range", {"key": _b64(key)}, timeout=1).get("kvs") is None
    except (OSError, urllib.error.HTTPError):
        return False


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def acknowledge(release: Release, pod: Pod, key: str, ledger: dict[str, str]) -> bool:
    """Put until etcd acknowledges (a put that timed out during an election is sent again)."""
    release.put(pod, key, ledger[key])
    return True


def promote(release: Release, pod: Pod, via: Pod, template: Path, **extra: str) -> None:
    release.start_etcd(pod)
    release.wait_started(pod, via)
    ok(release.agent(pod, "watch", "--once", "--timeout", "90", template=template, **extra))


def voters(release: Release, via: Pod) -> list[str]:
    members = release.members(via)
    assert all(not m.get("isLearner") for m in members), members
    return sorted(m.get("name", "") for m in members)


# -- item 1 -----------------------------------------------------------------------------------


def test_a_lost_wal_claim_in_a_full_outage_loses_no_acknowledged_write(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory(pods=3)
    p0, p1, p2 = release.pods
    template = template_with_wal_claim(release, 3)
    bootstrap(release, template, 3)
    assert all(any((wal_volume(p) / "wal").glob("*.wal")) for p in release.pods)
    cluster_id = release.cluster_id(p0)
    acknowledged = {"ledger/1": "all three"}
    release.put(p0, "ledger/1", "all three")

    # etcd-1 lags: W is acknowledged by etcd-0 and etcd-2 only.
    release.stop_etcd(p1)
    acknowledged["ledger/W"] = "acknowledged by etcd-0 and etcd-2"
    release.wait_for("W acknowledged", lambda: acknowledge(release, p0, "ledger/W", acknowledged))
    assert release.get(p2, "ledger/W") == acknowledged["ledger/W"]

    # Full outage; etcd-0's WAL claim is lost (a new, empty one), its data claim is kept.
    for pod in release.pods:
        release.stop_etcd(pod)
        release.new_pod(pod)
    shutil.rmtree(wal_volume(p0))
    wal_volume(p0).mkdir()
    assert (p0.data_dir / "member" / "snap" / "db").is_file()

    # etcd-0 comes back first, then etcd-1; etcd-2 stays down.
    waiting, log0 = release.spawn_agent(p0, "prepare", "--timeout", "120", template=template)
    release.wait_for("etcd-0 to decide", lambda: "member-agent prepare:" in log0.read_text())
    if p0.output.exists():  # the agent decided to start it: do what the pod would
        release.start_etcd(p0)
    out = ok(release.agent(p1, "prepare", "--timeout", "60", template=template))
    assert out[-1].endswith(
        "data=present cluster=unreachable -> starting on the existing data; wrote " + str(p1.output)
    ), out
    release.start_etcd(p1)
    end = time.monotonic() + 8
    while time.monotonic() < end:
        for pod in (p0, p1):
            assert not answers_missing(release, pod, "ledger/W"), f"{pod.name} lost W"
        time.sleep(0.2)
    assert waiting.poll() is None and not p0.output.exists()
    assert state_of(p1) == "existing"
    first = log0.read_text().splitlines()[0]
    assert re.fullmatch(
        r"member-agent prepare: data=damaged cluster=unreachable -> waiting [0-9.]+s: the data"
        r" directory holds a snapshot or db but no WAL \(\*\.wal\), so etcd would start a fresh"
        r" raft log on it and forget what this member acknowledged; waiting for the cluster to"
        r" answer, then the data is moved aside and this member removed and added again"
        r" \(asked: etcd-1: .+; etcd-2: .+\)",
        first,
    ), first

    # etcd-2 comes back: quorum again, and etcd-0 is re-added on moved-aside data.
    out = ok(release.agent(p2, "prepare", "--timeout", "60", template=template))
    assert state_of(p2) == "existing"
    release.start_etcd(p2)
    assert waiting.wait(timeout=120) == 0, log0.read_text()
    last = log0.read_text().splitlines()[-1]
    assert re.fullmatch(
        # etcd may refuse the add right after the removal ("unhealthy cluster"): then the last
        # attempt sees 2 members and this one unlisted.
        r"member-agent prepare: data=(damaged|absent) cluster=reachable\(\d members, leader \w+\)"
        r" listed=(yes|no) -> (moved data to \S+, )?"
        r"(removed the stale member \w+ \(its data is gone\), )?added as learner \w+,"
        r" joining with initial-cluster \S+ state existing; wrote \S+",
        last,
    ), log0.read_text()
    assert "moved data to " + str(p0.data_dir) + ".removed-" in log0.read_text()
    assert log0.read_text().count("removed the stale member ") == 1, log0.read_text()
    aside = list(p0.volume.glob("data.removed-*"))
    assert len(aside) == 1 and (aside[0] / "member" / "snap" / "db").is_file()
    assert state_of(p0) == "existing"
    promote(release, p0, p2, template)
    assert voters(release, p2) == ["etcd-0", "etcd-1", "etcd-2"]
    for pod in release.pods:
        release.wait_healthy(pod)
        assert release.cluster_id(pod) == cluster_id
        for key, value in acknowledged.items():
            assert release.get(pod, key) == value, (pod.name, key)


# -- item 2 -----------------------------------------------------------------------------------


def test_a_joining_member_whose_first_start_failed_joins_with_existing(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory(pods=4)
    p0, p1, p2, p3 = release.pods
    bootstrap(release, release.template(3), 3)
    cluster_id = release.cluster_id(p0)
    release.put(p0, "ledger/1", "before the scale-up")

    template4 = release.template(4)
    out = ok(release.agent(p3, "prepare", "--timeout", "60", template=template4))
    assert " -> added as learner " in out[-1] and state_of(p3) == "existing"
    learner_id = next(m["ID"] for m in release.members(p0) if not m.get("clientURLs"))

    # Its first etcd start fails before a WAL exists: the peers do not answer.
    for pod in (p0, p1, p2):
        assert pod.etcd is not None
        os.killpg(pod.etcd.pid, signal.SIGSTOP)
    try:
        release.start_etcd(p3)
        assert p3.etcd is not None
        assert p3.etcd.wait(timeout=60) != 0
    finally:
        for pod in (p0, p1, p2):
            assert pod.etcd is not None
            os.killpg(pod.etcd.pid, signal.SIGCONT)
    assert (p3.data_dir / "member" / "snap" / "db").is_file()
    assert not any((p3.data_dir / "member" / "wal").glob("*.wal"))
    for pod in (p0, p1, p2):
        release.wait_healthy(pod)

    # The pod is recreated: it joins with its unstarted learner entry, never with `new`.
    release.new_pod(p3)
    out = ok(release.agent(p3, "prepare", "--timeout", "60", template=template4))
    assert re.fullmatch(
        r"member-agent prepare: data=damaged cluster=reachable\(4 members, leader \w+\)"
        rf" listed=yes -> moved data to {re.escape(str(p3.data_dir))}\.removed-\d{{8}}T\d{{6}}Z,"
        rf" reusing the unstarted member {format(int(learner_id), 'x')}, joining with"
        r" initial-cluster \S+ state existing; wrote \S+",
        out[-1],
    ), out
    assert state_of(p3) == "existing"
    promote(release, p3, p0, template4)
    assert voters(release, p0) == ["etcd-0", "etcd-1", "etcd-2", "etcd-3"]
    release.wait_healthy(p3)
    release.put(p3, "ledger/2", "after")
    for pod in release.pods:
        assert release.cluster_id(pod) == cluster_id
        assert release.get(pod, "ledger/1") == "before the scale-up"
        assert release.get(pod, "ledger/2") == "after"


# -- item 9 -----------------------------------------------------------------------------------


def test_watch_re_creates_a_deleted_cluster_record(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory(pods=1)
    pod = release.pods[0]
    template = release.template(1)
    bootstrap(release, template, 1)
    cluster_id = release.cluster_id(pod)
    watcher, log = release.spawn_agent(pod, "watch", "--interval", "1", template=template)
    release.wait_for("the first pass", lambda: "cluster record" in log.read_text())
    assert "is current" in log.read_text()
    for _ in range(2):  # not only once
        assert release.delete_object("v1", "configmaps", RECORD)
        release.wait_for(
            "the record to be created again",
            lambda: release.get_object("v1", "configmaps", RECORD) is not None,
            timeout=15,
        )
    record = release.get_object("v1", "configmaps", RECORD)
    assert record is not None
    assert record["data"]["clusterID"] == cluster_id and record["data"]["token"] == TOKEN
    created = [x for x in log.read_text().splitlines() if "created the cluster record" in x]
    assert len(created) == 2, log.read_text()
    assert watcher.poll() is None


def test_prepare_refuses_a_cluster_other_than_the_recorded_one(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory(pods=4)
    p0, _p1, p2, p3 = release.pods
    bootstrap(release, release.template(3), 3)
    cluster_id = release.cluster_id(p0)
    record = release.get_object("v1", "configmaps", RECORD)
    assert record is not None
    record["data"]["clusterID"] = "5eed"  # the record of another cluster under this name
    release.put_object(record)
    why = (
        f"the reachable cluster {cluster_id} is not cluster 5eed of the cluster record"
        f" {release.namespace}/{RECORD}: two clusters under one name; not starting."
    )

    joining = release.agent(p3, "prepare", "--timeout", "3", template=release.template(4))
    assert joining.returncode == 2, joining.stderr
    out = joining.stderr.splitlines()
    assert all("listed=no -> " in line and why in line for line in out), out
    assert " -> giving up (--timeout): " in out[-1]
    assert not p3.output.exists()
    assert len(release.members(p0)) == 3

    release.stop_etcd(p2, signal.SIGTERM)
    release.new_pod(p2)
    restart = release.agent(p2, "prepare", "--timeout", "3", template=release.template(3))
    assert restart.returncode == 2, restart.stderr
    assert all(
        "data=present" in line and "listed=yes -> " in line and why in line
        for line in restart.stderr.splitlines()
    ), restart.stderr
    assert not p2.output.exists()

    record["data"]["clusterID"] = cluster_id
    release.put_object(record)
    out = ok(release.agent(p2, "prepare", "--timeout", "30", template=release.template(3)))
    assert out[-1].endswith("-> starting on the existing data; wrote " + str(p2.output))
    assert state_of(p2) == "existing"


def test_record_off_scale_up_while_the_only_member_is_down_makes_no_second_cluster(
    release_factory: Callable[..., Release],
) -> None:
    """clusterRecord.enabled=false, 1 member, etcd-0 down, upgrade to 3. The chart now refuses
    that render unless initialClusterState is given (tests/chart/test_chart_record.py); with
    `existing`, as it asks for after the first install, the new members wait for etcd-0 and
    join its cluster instead of bootstrapping their own."""
    release = release_factory(pods=3)
    p0, p1, p2 = release.pods
    off = {"ETCD_AGENT_RECORD": ""}
    template1 = release.template(1)
    out = ok(release.agent(p0, "prepare", "--timeout", "30", template=template1, **off))
    assert out[-1].startswith(
        "member-agent prepare: data=absent cluster=unreachable record=disabled -> bootstrapping"
    ), out
    release.start_etcd(p0)
    release.wait_healthy(p0)
    cluster_id = release.cluster_id(p0)
    release.put(p0, "ledger/1", "one member")
    release.stop_etcd(p0, signal.SIGTERM)
    release.new_pod(p0)

    template3 = release.template(3, state="existing")
    joining = [
        release.spawn_agent(pod, "prepare", "--timeout", "120", template=template3, **off)
        for pod in (p1, p2)
    ]
    for (process, log), pod in zip(joining, (p1, p2), strict=True):
        release.wait_for(f"{pod.name} to wait", lambda log=log: " -> waiting " in log.read_text())
        assert process.poll() is None and not pod.output.exists()
        assert (
            "data=absent cluster=unreachable record=disabled -> waiting"
            in log.read_text().splitlines()[0]
        )
        assert "the template's initial-cluster-state is existing" in log.read_text()

    out = ok(release.agent(p0, "prepare", "--timeout", "30", template=template3, **off))
    assert out[-1].endswith(
        "cluster=unreachable -> starting on the existing data; wrote " + str(p0.output)
    )
    release.start_etcd(p0)
    waiting = dict(zip((p1, p2), joining, strict=True))
    while waiting:  # one member change at a time: whichever was added first goes first
        release.wait_for(
            "a join", lambda: any(p.poll() is not None for p, _ in waiting.values()), timeout=90
        )
        pod = next(pod for pod, (process, _) in waiting.items() if process.poll() is not None)
        process, log = waiting.pop(pod)
        assert process.returncode == 0, log.read_text()
        assert state_of(pod) == "existing"
        assert " -> added as learner " in log.read_text().splitlines()[-1]
        promote(release, pod, p0, template3, **off)
    assert voters(release, p0) == ["etcd-0", "etcd-1", "etcd-2"]
    for pod in release.pods:
        release.wait_healthy(pod)
        assert release.cluster_id(pod) == cluster_id
        assert release.get(pod, "ledger/1") == "one member"
