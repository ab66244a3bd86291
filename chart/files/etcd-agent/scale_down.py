"""`scale-down`, the pre-upgrade/pre-rollback hook: remove the members above the new count."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

from cluster_query import call_first, cluster_view
from errors import Retry
from etcd_client import EtcdClient, EtcdError, Unreachable
from kube_client import KubeClient, read_record, read_statefulset_replicas
from members import ClusterView, Member
from runtime import Backoff, Deadline, Log
from scale_down_decision import (
    FALLBACK_ORDINALS,
    SCALE_DOWN_WAY_OUT,
    STS_PRESENT,
    remaining_voters,
    scale_down_targets,
    unreachable_verdict,
)
from settings import Settings, tls_context
from start_decision import RECORD_ABSENT, RECORD_DISABLED, RECORD_UNKNOWN
from urls import hex_id


def run_scale_down(
    settings: Settings, env: Mapping[str, str], log: Log, replicas: int, timeout: float
) -> int:
    settings.require("statefulset", "namespace", "headless_service")
    sts = settings.statefulset
    if replicas == 0:
        log(
            "replicas=0 -> nothing to do: every member is kept, so the cluster resumes on its"
            " data when the pods come back"
        )
        return 0
    # The record first: on Argo CD's first sync the optional agent certificate is not issued yet,
    # and with no cluster there is nothing to do, TLS or not.
    kube = KubeClient(env)
    state, _, detail = read_record(kube, settings.namespace, settings.record)
    if state == RECORD_ABSENT:
        log(f"replicas={replicas} record=absent -> nothing to do (no cluster has been created yet)")
        return 0
    unissued = [
        f for f in (settings.cacert, settings.cert, settings.key) if f and not os.path.exists(f)
    ]
    if state == RECORD_DISABLED and unissued:
        log(
            f"replicas={replicas} record=disabled tls=not-issued -> nothing to do: the agent"
            f" certificate ({', '.join(unissued)}) is not issued yet, and no member pod starts"
            " without it"
        )
        return 0
    client = EtcdClient(tls_context(settings), settings.root_password_file)
    primary = [settings.pod_client_url(f"{sts}-{i}") for i in range(replicas)]
    fallback = [
        settings.pod_client_url(f"{sts}-{i}") for i in range(replicas, replicas + FALLBACK_ORDINALS)
    ]
    deadline = Deadline(timeout)
    backoff = Backoff()
    cluster, errors = cluster_view(client, primary)
    if cluster is None:
        cluster, more = cluster_view(client, fallback)
        errors = "; ".join(part for part in (errors, more) if part)
    if cluster is None:
        seen = f"replicas={replicas} cluster=unreachable record={state}"
        if state == RECORD_DISABLED:
            log(f"{seen} -> nothing to do (no cluster has been created yet)")
            return 0
        sts_state, live, sts_detail = read_statefulset_replicas(kube, settings.namespace, sts)
        seen += f" statefulset={live if sts_state == STS_PRESENT else sts_state}"
        go_on, verdict = unreachable_verdict(replicas, sts_state, live, sts_detail)
        if go_on:
            log(f"{seen} -> {verdict}")
            return 0
        record_note = f" (record: {detail})" if state == RECORD_UNKNOWN else ""
        log(f"{seen} -> {verdict}{record_note} (asked: {errors}); {SCALE_DOWN_WAY_OUT}")
        return 1
    while True:
        targets = scale_down_targets(cluster.members, sts, replicas)
        seen = f"replicas={replicas} cluster={cluster.describe()}"
        if not targets:
            names = ", ".join(sorted(member.label for member in cluster.members))
            log(f"{seen} -> nothing to remove (members: {names})")
            return 0
        ordinal, target = targets[0]
        keep = remaining_voters(cluster.members, sts, replicas, target)
        sick = []
        for member in keep:
            url = member.client_urls[0] if member.client_urls else ""
            healthy, reason = client.health(url) if url else (False, "never started")
            if not healthy:
                sick.append(f"{member.label}: {reason}")
        why = ""
        if not keep:
            why = "no voting member would remain"
        elif sick:
            why = "not every remaining voter is healthy: " + "; ".join(sick)
        else:
            why = remove_member(client, cluster, target, keep, settings, log, seen)
        if why:
            delay = backoff.next(why)
            if deadline.expired(delay):
                log(
                    f"{seen} -> giving up on removing {target.label} (--timeout): {why};"
                    f" {SCALE_DOWN_WAY_OUT}"
                )
                return 1
            log(f"{seen} -> waiting {delay}s before removing {target.label}: {why}")
            time.sleep(delay)
        else:
            backoff.reset()
        endpoints = [url for member in keep for url in member.client_urls] or primary
        view, errors = cluster_view(client, endpoints)
        if view is None:
            if deadline.expired():
                log(
                    f"{seen} -> giving up: no member answers any more ({errors});"
                    f" {SCALE_DOWN_WAY_OUT}"
                )
                return 1
            time.sleep(backoff.next())
            continue
        cluster = view


def remove_member(
    client: EtcdClient,
    cluster: ClusterView,
    target: Member,
    keep: Sequence[Member],
    settings: Settings,
    log: Log,
    seen: str,
) -> str:
    """Remove `target` (moving leadership off it first); "" when done, else why not."""
    endpoints = [url for member in keep for url in member.client_urls]
    if cluster.leader == target.id and target.client_urls:
        # Removing the leader costs an election; handing leadership over first does not.
        successor = keep[0]
        try:
            client.call(
                target.client_urls[0],
                "/v3/maintenance/transfer-leadership",
                {"targetID": successor.id},
            )
        except (EtcdError, Unreachable) as err:
            log(f"{seen} -> could not move leadership off {target.label} first: {err}")
        else:
            log(f"{seen} -> moved leadership from {target.label} to {successor.label}")
    try:
        call_first(client, endpoints, "/v3/cluster/member/remove", {"ID": target.id})
    except (EtcdError, Unreachable, Retry) as err:
        return f"etcd did not remove it: {err}"
    for _ in range(20):
        view, _errors = cluster_view(client, endpoints)
        if view is not None and all(member.id != target.id for member in view.members):
            log(f"{seen} -> removed member {target.label} ({hex_id(target.id)})")
            return ""
        time.sleep(0.5)
    return "the removal does not show in the member list yet"
