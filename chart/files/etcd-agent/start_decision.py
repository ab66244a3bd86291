"""How a member starts (DESIGN.md part 3, cases 1-4): pure functions of what `prepare` saw, no
I/O, so that every case is a unit test."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from members import ClusterView, Member
from urls import format_initial_cluster, hex_id

START, JOIN, BOOTSTRAP, WAIT = "start", "join", "bootstrap", "wait"
DATA_PRESENT, DATA_ABSENT, DATA_DAMAGED = "present", "absent", "damaged"
RECORD_PRESENT, RECORD_ABSENT = "present", "absent"
RECORD_UNKNOWN, RECORD_DISABLED, RECORD_UNCHECKED = "unknown", "disabled", "unchecked"


@dataclasses.dataclass(frozen=True)
class StartFacts:
    """Everything the join decision looks at."""

    name: str
    peer_urls: tuple[str, ...]
    has_data: bool
    cluster: ClusterView | None
    bootstrap_names: tuple[str, ...]
    template_state: str
    record: str = RECORD_UNCHECKED
    record_name: str = ""
    # A snapshot or db without a WAL (member_data_state): never started on, never counted as data.
    damaged_data: bool = False
    # The cluster ID (hex) the cluster record names, when it was read and names one.
    record_cluster_id: str = ""


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str
    seen: str
    why: str = ""
    move_data_aside: bool = False
    remove_id: str = ""
    add_learner: bool = False
    reuse_id: str = ""


def in_flight(cluster: ClusterView, own: Member | None) -> list[Member]:
    """Member changes not finished yet: unstarted members and learners other than this one."""
    return [
        member
        for member in cluster.members
        if (own is None or member.id != own.id) and (member.is_learner or not member.started)
    ]


def decide_start(facts: StartFacts) -> Decision:
    """DESIGN.md part 3: how this member starts. Pure; the caller carries the decision out."""
    data = DATA_DAMAGED if facts.damaged_data else DATA_PRESENT if facts.has_data else DATA_ABSENT
    cluster = facts.cluster
    if cluster is None:
        seen = f"data={data} cluster=unreachable"
        if facts.has_data:
            return Decision(START, seen)
        if facts.damaged_data:
            return Decision(
                WAIT,
                seen,
                "the data directory holds a snapshot or db but no WAL (*.wal), so etcd would"
                " start a fresh raft log on it and forget what this member acknowledged; waiting"
                " for the cluster to answer, then the data is moved aside and this member"
                " removed and added again",
            )
        seen += f" record={facts.record}"
        if facts.name not in facts.bootstrap_names:
            return Decision(
                WAIT,
                seen,
                f"{facts.name} is not a bootstrap member (not in the template's initial-cluster);"
                " it can only join a running cluster",
            )
        if facts.template_state == "existing":
            return Decision(
                WAIT,
                seen,
                "the template's initial-cluster-state is existing: this cluster was created"
                " before, so no new one is bootstrapped; waiting for its members",
            )
        if facts.record == RECORD_PRESENT:
            return Decision(
                WAIT,
                seen,
                f"the cluster record {facts.record_name} exists: this cluster was created before"
                " and a second, empty one is never bootstrapped under its name; waiting for its"
                f" members (delete ConfigMap {facts.record_name} only to start over on purpose)",
            )
        if facts.record not in (RECORD_ABSENT, RECORD_DISABLED):
            return Decision(
                WAIT,
                seen,
                f"cannot tell whether the cluster was created (cluster record {facts.record_name}"
                " unreadable); not bootstrapping",
            )
        return Decision(BOOTSTRAP, seen)

    own = cluster.find(facts.peer_urls)
    seen = f"data={data} cluster={cluster.describe()} listed={'yes' if own else 'no'}"
    live_id = hex_id(cluster.cluster_id)
    if facts.record_cluster_id and cluster.cluster_id and live_id != facts.record_cluster_id:
        return Decision(
            WAIT,
            seen,
            f"the reachable cluster {live_id} is not cluster {facts.record_cluster_id} of the"
            f" cluster record {facts.record_name}: two clusters under one name; not starting."
            " Find out which cluster holds the data; if the cluster was restored from a snapshot"
            f" on purpose, delete ConfigMap {facts.record_name} and the agents record the new one",
        )
    if facts.has_data and own is not None:
        return Decision(START, seen)
    if own is not None and not own.started:
        return Decision(JOIN, seen, move_data_aside=facts.damaged_data, reuse_id=own.id)
    busy = in_flight(cluster, own)
    if busy:
        names = ", ".join(
            f"{member.label} ({'learner' if member.is_learner else 'not started'})"
            for member in busy
        )
        return Decision(WAIT, seen, f"another member change is in flight: {names}")
    return Decision(
        JOIN,
        seen,
        move_data_aside=facts.has_data or facts.damaged_data,
        remove_id=own.id if own is not None else "",
        add_learner=True,
    )


def join_initial_cluster(members: Sequence[Member], name: str, peer_urls: Sequence[str]) -> str:
    """initial-cluster for joining: every other member (by pod name when unstarted) + this one."""
    pairs: list[tuple[str, str]] = []
    for member in members:
        if member.has_peer_url(peer_urls):
            continue
        pairs.extend((member.label, url) for url in member.peer_urls)
    pairs.extend((name, url) for url in peer_urls)
    return format_initial_cluster(pairs)


def stuck_learner_message(member: Member, waited: float, limit: float) -> str:
    state = "never started" if not member.started else "started, not in sync with the leader"
    match = re.fullmatch(r".+-([0-9]+)", member.label)
    by_helm = (
        f"`helm upgrade` with replicas={match.group(1)} (the scale-down hook removes members above"
        " the new count, learners included), or "
        if match
        else ""
    )
    return (
        f"giving up after {waited:.0f}s (--learner-wait {limit:g}): learner {member.label}"
        f" ({hex_id(member.id)}) has not become a voter ({state}); every later member change"
        f" waits for it. If its pod cannot run or catch up, remove it: {by_helm}etcdctl member"
        f" remove {hex_id(member.id)}"
    )


RESTORE, SKIP_RESTORE = "restore", "skip"


def decide_restore(
    data: str, record: str, name: str, bootstrap_names: Sequence[str], template_state: str
) -> tuple[str, str]:
    """(RESTORE, SKIP_RESTORE or WAIT, why): a member restores the release's snapshot only where a
    bootstrap member would bootstrap `new` (DESIGN.md part 3, case 4), never over files."""
    if data == DATA_PRESENT:
        return (
            SKIP_RESTORE,
            "the data directory holds a member: it starts on that, never on a snapshot",
        )
    if data == DATA_DAMAGED:
        return (
            SKIP_RESTORE,
            "the data directory holds files: a snapshot is never restored over them",
        )
    if name not in bootstrap_names:
        return SKIP_RESTORE, f"{name} is not a bootstrap member: it joins the restored cluster"
    if template_state == "existing":
        return SKIP_RESTORE, "initial-cluster-state is existing: the cluster exists, so it joins"
    if record == RECORD_PRESENT:
        return SKIP_RESTORE, (
            "the cluster record exists: the restored cluster has formed, so this member joins it"
            " like any member that lost its data"
        )
    if record not in (RECORD_ABSENT, RECORD_DISABLED):
        return WAIT, "cannot tell whether the cluster was created (cluster record unreadable)"
    return RESTORE, "no data and no cluster record: restoring the snapshot"
