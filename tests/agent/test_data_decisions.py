"""The member agent's data detection and its decisions on damaged data and a foreign cluster
(issue 14, items 1, 2 and 9): pure functions, no etcd."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_dir import member_data_state
from members import ClusterView, Member
from start_decision import Decision, StartFacts, decide_start

D = "etcd-headless.ns.svc.cluster.local"
WAL_NAME = "0000000000000000-0000000000000000.wal"


def url(pod: str, port: int = 2380) -> str:
    return f"http://{pod}.{D}:{port}"


def member(pod: str, member_id: str, started: bool = True) -> object:
    clients = (url(pod, 2379),) if started else ()
    return Member(member_id, pod if started else "", (url(pod),), clients, False)


def view(*members: object, cluster_id: str = "255") -> object:
    return ClusterView(tuple(members), "17", cluster_id, url("etcd-0", 2379))


def facts(**changes: object) -> object:
    base = {
        "name": "etcd-1",
        "peer_urls": (url("etcd-1"),),
        "has_data": False,
        "cluster": None,
        "bootstrap_names": ("etcd-0", "etcd-1", "etcd-2"),
        "template_state": "new",
        "record": "unchecked",
        "record_name": "ns/etcd-cluster-record",
    }
    base.update(changes)
    return StartFacts(**base)


# -- what counts as data: etcd's own rule, *.wal files in the WAL directory ------------------


def test_data_is_present_only_with_wal_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    state = member_data_state
    assert state(str(data)) == "absent"
    data.mkdir()
    (data / "lost+found").mkdir()
    assert state(str(data)) == "absent"
    (data / "member" / "wal").mkdir(parents=True)
    (data / "member" / "snap").mkdir()
    assert state(str(data)) == "absent"  # empty directories hold nothing to lose
    (data / "member" / "wal" / "0.tmp").write_text("")
    assert state(str(data)) == "damaged"  # something was written, but no WAL
    (data / "member" / "wal" / "0.tmp").unlink()
    (data / "member" / "snap" / "db").write_text("bolt")
    assert state(str(data)) == "damaged"  # a db without a WAL: the first start failed
    (data / "member" / "wal" / WAL_NAME).write_text("")
    assert state(str(data)) == "present"


def test_a_separate_wal_dir_decides_and_the_default_one_is_ignored(tmp_path: Path) -> None:
    data, wal = tmp_path / "data", tmp_path / "wal-volume" / "wal"
    state = member_data_state
    (data / "member" / "snap").mkdir(parents=True)
    (data / "member" / "snap" / "db").write_text("bolt")
    (data / "member" / "snap" / "0000000000000002-0000000000000010.snap").write_text("s")
    assert state(str(data), str(wal)) == "damaged"  # the WAL claim was lost
    wal.mkdir(parents=True)
    assert state(str(data), str(wal)) == "damaged"  # ... and replaced by an empty one
    (data / "member" / "wal").mkdir()
    (data / "member" / "wal" / WAL_NAME).write_text("")
    assert state(str(data), str(wal)) == "damaged"  # etcd reads only wal-dir when it is set
    (wal / WAL_NAME).write_text("")
    assert state(str(data), str(wal)) == "present"
    (data / "member" / "snap" / "db").unlink()
    assert state(str(data), str(wal)) == "damaged"  # a WAL without its db: the data claim lost
    for path in (data / "member" / "snap").iterdir():
        path.unlink()
    (data / "member" / "wal" / WAL_NAME).unlink()
    assert state(str(tmp_path / "new-data"), str(wal)) == "damaged"


# -- damaged data: never started on, moved aside, the member re-added ----------------------


def test_damaged_data_and_cluster_unreachable_waits_and_says_why() -> None:
    for template_state in ("new", "existing"):
        decision = decide_start(facts(damaged_data=True, template_state=template_state))
        assert decision == Decision(
            "wait",
            "data=damaged cluster=unreachable",
            "the data directory holds a snapshot or db but no WAL (*.wal), so etcd would start"
            " a fresh raft log on it and forget what this member acknowledged; waiting for the"
            " cluster to answer, then the data is moved aside and this member removed and"
            " added again",
        )


def test_damaged_data_of_a_started_member_moves_aside_removes_and_re_adds() -> None:
    cluster = view(member("etcd-0", "17"), member("etcd-1", "18"))
    decision = decide_start(facts(damaged_data=True, cluster=cluster))
    assert decision == Decision(
        "join",
        "data=damaged cluster=reachable(2 members, leader 11) listed=yes",
        move_data_aside=True,
        remove_id="18",
        add_learner=True,
    )


def test_damaged_data_of_an_unstarted_member_moves_aside_and_reuses_it() -> None:
    cluster = view(member("etcd-0", "17"), member("etcd-1", "18", False))
    decision = decide_start(facts(damaged_data=True, cluster=cluster))
    assert decision == Decision(
        "join",
        "data=damaged cluster=reachable(2 members, leader 11) listed=yes",
        move_data_aside=True,
        reuse_id="18",
    )


def test_damaged_data_not_listed_moves_aside_and_adds() -> None:
    cluster = view(member("etcd-0", "17"))
    decision = decide_start(facts(damaged_data=True, cluster=cluster))
    assert (decision.action, decision.move_data_aside, decision.add_learner) == ("join", True, True)


def test_damaged_data_waits_while_another_change_is_in_flight() -> None:
    cluster = view(
        member("etcd-0", "17"),
        member("etcd-1", "18"),
        member("etcd-3", "20", False),
    )
    decision = decide_start(facts(damaged_data=True, cluster=cluster))
    assert decision.action == "wait"
    assert decision.why == "another member change is in flight: etcd-3 (not started)"
    assert not decision.move_data_aside


# -- the reachable cluster must be the recorded one ------------------------------------------

FOREIGN = (
    "the reachable cluster ff is not cluster 1234 of the cluster record ns/etcd-cluster-record:"
    " two clusters under one name; not starting. Find out which cluster holds the data; if the"
    " cluster was restored from a snapshot on purpose, delete ConfigMap ns/etcd-cluster-record"
    " and the agents record the new one"
)


@pytest.mark.parametrize(
    "changes",
    [{}, {"has_data": True}, {"damaged_data": True}],
    ids=["no data", "data", "damaged data"],
)
def test_a_cluster_other_than_the_recorded_one_is_refused(changes: dict[str, object]) -> None:
    cluster = view(member("etcd-0", "17"), member("etcd-1", "18"))
    decision = decide_start(
        facts(cluster=cluster, record="present", record_cluster_id="1234", **changes)
    )
    assert decision.action == "wait"
    assert decision.why == FOREIGN
    assert not decision.move_data_aside and not decision.remove_id and not decision.add_learner


def test_the_recorded_cluster_is_joined() -> None:
    cluster = view(member("etcd-0", "17"), member("etcd-1", "18"))
    decision = decide_start(
        facts(cluster=cluster, has_data=True, record="present", record_cluster_id="ff")
    )
    assert decision.action == "start"
