"""`prepare`, the init container: decide how this member starts and write etcd's configuration."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from cluster_query import call_first, cluster_view
from data_dir import member_data_state, move_data_aside, utc_stamp
from errors import Retry
from etcd_client import EtcdClient, EtcdError, Unreachable
from etcd_config import load_template, write_config
from kube_client import KubeClient, read_record
from members import ClusterView, Member, voter_endpoints
from restore import adopt_restored_data
from runtime import Backoff, Deadline, Log, wait_or_give_up
from settings import Settings, tls_context
from start_decision import (
    BOOTSTRAP,
    DATA_DAMAGED,
    DATA_PRESENT,
    JOIN,
    RECORD_UNCHECKED,
    RECORD_UNKNOWN,
    START,
    WAIT,
    Decision,
    StartFacts,
    decide_start,
    in_flight,
    join_initial_cluster,
    stuck_learner_message,
)
from urls import hex_id, normalize_url, parse_initial_cluster, split_urls

# prepare gives up (the init container restarts and asks again) when one learner has blocked
# its join this long: long enough for a learner to catch up on a large snapshot.
DEFAULT_LEARNER_WAIT = 300.0


def carry_out(
    decision: Decision,
    facts: StartFacts,
    config: dict[str, Any],
    client: EtcdClient,
) -> tuple[dict[str, Any], str]:
    """Do what the decision says; return the config to write and what was done."""
    if decision.action == START:
        # etcd ignores the state on a WAL, but `new` is never written over existing data.
        return {**config, "initial-cluster-state": "existing"}, "starting on the existing data"
    if decision.action == BOOTSTRAP:
        config = {**config, "initial-cluster-state": "new"}
        return config, (
            f"bootstrapping a new cluster: initial-cluster {config.get('initial-cluster', '')}"
            " state new"
        )
    cluster = facts.cluster
    assert cluster is not None and decision.action == JOIN
    done = []
    if decision.move_data_aside:
        moved = move_data_aside(
            str(config["data-dir"]), str(config.get("wal-dir") or ""), utc_stamp()
        )
        done.append("moved data to " + " and ".join(moved))
    endpoints = voter_endpoints(cluster, exclude=decision.remove_id)
    members = list(cluster.members)
    try:
        if decision.remove_id:
            call_first(client, endpoints, "/v3/cluster/member/remove", {"ID": decision.remove_id})
            done.append(f"removed the stale member {hex_id(decision.remove_id)} (its data is gone)")
            members = [member for member in members if member.id != decision.remove_id]
        if decision.add_learner:
            answer = call_first(
                client,
                endpoints,
                "/v3/cluster/member/add",
                {"peerURLs": list(facts.peer_urls), "isLearner": True},
            )
            added = Member.from_json(answer.get("member") or {})
            done.append(f"added as learner {hex_id(added.id)}")
            members = [Member.from_json(item) for item in answer.get("members") or ()] or [
                *members,
                added,
            ]
    except (EtcdError, Unreachable) as err:
        raise Retry("; ".join([*done, str(err)])) from None
    if decision.reuse_id:
        done.append(f"reusing the unstarted member {hex_id(decision.reuse_id)}")
    initial = join_initial_cluster(members, facts.name, facts.peer_urls)
    config = {**config, "initial-cluster": initial, "initial-cluster-state": "existing"}
    done.append(f"joining with initial-cluster {initial} state existing")
    return config, ", ".join(done)


def peer_url_moved(
    cluster: ClusterView | None, name: str, peer_urls: Sequence[str]
) -> Member | None:
    """This member under a new address (ports.peer or clusterDomain changed): not listed by its
    peer URLs, but a started member carries its name. Only asked when the data is present."""
    if cluster is None or not name or cluster.find(peer_urls) is not None:
        return None
    return next((m for m in cluster.members if m.name == name and m.started), None)


def update_peer_url(
    client: EtcdClient, cluster: ClusterView, member: Member, peer_urls: Sequence[str]
) -> str:
    """Move `member` to `peer_urls` in place: same ID, same data, no removal."""
    endpoints = voter_endpoints(cluster, exclude=member.id)
    body = {"ID": member.id, "peerURLs": list(peer_urls)}
    try:
        call_first(client, endpoints, "/v3/cluster/member/update", body)
    except EtcdError as err:
        raise Retry(str(err)) from None
    return (
        f"updated the peer URL of member {member.name} ({hex_id(member.id)}) from"
        f" {','.join(member.peer_urls)} to {','.join(peer_urls)} (same name, data present: the"
        " same member under a new address)"
    )


class LearnerWait:
    """How long each learner has been seen blocking this member's join (prepare only)."""

    def __init__(self, limit: float):
        self.limit = limit
        self.since: dict[str, float] = {}

    def overdue(self, cluster: ClusterView | None, peer_urls: Sequence[str]) -> str:
        """Why to give up when a learner has blocked longer than the limit; else ""."""
        if cluster is None or self.limit <= 0:
            return ""
        now = time.monotonic()
        busy = [m for m in in_flight(cluster, cluster.find(peer_urls)) if m.is_learner]
        self.since = {m.id: self.since.get(m.id, now) for m in busy}
        for member in busy:
            waited = now - self.since[member.id]
            if waited >= self.limit:
                return stuck_learner_message(member, waited, self.limit)
        return ""


def run_prepare(
    settings: Settings, env: Mapping[str, str], log: Log, timeout: float, learner_wait: float = 0
) -> int:
    config = load_template(settings.template, env)
    name = str(config["name"])
    peer_urls = tuple(split_urls(str(config["initial-advertise-peer-urls"])))
    bootstrap = parse_initial_cluster(str(config.get("initial-cluster", "")))
    own = {normalize_url(url) for url in peer_urls}
    endpoints = [
        settings.client_url(url)
        for member_name, url in bootstrap
        if member_name != name and normalize_url(url) not in own
    ]
    client = EtcdClient(tls_context(settings), settings.root_password_file)
    kube = KubeClient(env)
    backoff, deadline = Backoff(), Deadline(timeout)
    learners = LearnerWait(learner_wait)
    updated: list[str] = []
    restored = adopt_restored_data(str(config["data-dir"]), str(config.get("wal-dir") or ""))
    if restored:
        updated.append(restored)
    while True:
        data = member_data_state(str(config["data-dir"]), str(config.get("wal-dir") or ""))
        cluster, errors = cluster_view(client, endpoints)
        moved = peer_url_moved(cluster, name, peer_urls) if data == DATA_PRESENT else None
        if cluster is not None and moved is not None:
            try:
                updated.append(update_peer_url(client, cluster, moved, peer_urls))
            except Retry as err:
                delay = backoff.next(str(err))
                if deadline.expired(delay):
                    log(f"data=present -> giving up (--timeout): cannot update the peer URL: {err}")
                    return 2
                log(f"data=present -> waiting {delay}s: cannot update the peer URL yet: {err}")
                time.sleep(delay)
                continue
            cluster, errors = cluster_view(client, endpoints)
        record, detail = RECORD_UNCHECKED, ""
        record_data: dict[str, str] = {}
        if cluster is not None or data != DATA_PRESENT:
            record, record_data, detail = read_record(kube, settings.namespace, settings.record)
        facts = StartFacts(
            name=name,
            peer_urls=peer_urls,
            has_data=data == DATA_PRESENT,
            cluster=cluster,
            bootstrap_names=tuple(member_name for member_name, _ in bootstrap),
            template_state=str(config.get("initial-cluster-state", "new")),
            record=record,
            record_name=f"{settings.namespace}/{settings.record}",
            damaged_data=data == DATA_DAMAGED,
            record_cluster_id=record_data.get("clusterID", ""),
        )
        decision = decide_start(facts)
        if decision.action == WAIT:
            why = decision.why
            if cluster is None:
                why += f" (asked: {errors})"
            if detail and record == RECORD_UNKNOWN:
                why += f" (record: {detail})"
            stuck = learners.overdue(cluster, peer_urls)
            if stuck:
                log(f"{decision.seen} -> {stuck}")
                return 2
        else:
            try:
                final, done = carry_out(decision, facts, config, client)
            except Retry as err:
                why = f"could not finish: {err}"
            else:
                write_config(settings.output, final)
                log(f"{decision.seen} -> {', '.join([*updated, done])}; wrote {settings.output}")
                return 0
        if not wait_or_give_up(log, backoff, deadline, decision.seen, why):
            return 2
