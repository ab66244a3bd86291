"""`defrag`, the CronJob's command: defragment the members whose database is fragmented, one at a
time, followers first and the leader last, only while every member is healthy; then disarm a
NOSPACE alarm once every database is back below the quota."""

from __future__ import annotations

import time
from collections.abc import Sequence

from cluster_query import cluster_view
from defrag_decision import (
    MemberSpace,
    Policy,
    effective_quota,
    mib,
    next_member,
    over_quota,
    verdict,
)
from etcd_client import EtcdClient, EtcdError, Unreachable
from members import ClusterView
from runtime import Deadline, Log
from scale_down_decision import FALLBACK_ORDINALS
from settings import Settings, tls_context

# A NOSPACE alarm makes /health fail on every member; the other alarms (CORRUPT) still count.
HEALTH_QUERY = "exclude=NOSPACE"
# How long a cluster that answers without quorum (an election) is asked again before giving up.
ELECTION_SECONDS = 10.0
# How long a defragmented member may take to answer /health again before the run stops.
RECOVERY_SECONDS = 60.0


def survey(
    client: EtcdClient, cluster: ClusterView
) -> tuple[list[MemberSpace], list[str], list[str]]:
    """Every member's database, the members that are not healthy (why), and the members with
    a NOSPACE alarm raised."""
    spaces: list[MemberSpace] = []
    sick: list[str] = []
    leaders: set[str] = set()
    answers: list[tuple[str, str, dict[str, object]]] = []
    for member in cluster.members:
        if not member.client_urls:
            sick.append(f"{member.label}: never started")
            continue
        url = member.client_urls[0]
        healthy, reason = client.health(url, HEALTH_QUERY)
        if not healthy:
            sick.append(f"{member.label}: {reason}")
            continue
        try:
            status = client.call(url, "/v3/maintenance/status")
        except (EtcdError, Unreachable) as err:
            sick.append(f"{member.label}: status: {err}")
            continue
        leaders.add(str(status.get("leader", "")))
        answers.append((member.id, member.label, status))
    if len(leaders) > 1:
        sick.append(f"the members name different leaders ({', '.join(sorted(leaders))})")
    leader = next(iter(leaders)) if len(leaders) == 1 else cluster.leader
    for member_id, label, status in answers:
        spaces.append(
            MemberSpace(
                member_id,
                label,
                int(str(status.get("dbSize", 0))),
                int(str(status.get("dbSizeInUse", status.get("dbSize", 0)))),
                member_id == leader,
            )
        )
    nospace: list[str] = []
    endpoints = [m.client_urls[0] for m in cluster.members if m.client_urls]
    for url in endpoints:
        try:
            answer = client.call(url, "/v3/maintenance/alarm", {"action": "GET"})
        except (EtcdError, Unreachable):
            continue
        for alarm in answer.get("alarms") or ():
            if isinstance(alarm, dict) and alarm.get("alarm") == "NOSPACE":
                nospace.append(str(alarm.get("memberID", "")))
        break
    return spaces, sick, nospace


def live_quota(client: EtcdClient, cluster: ClusterView, configured: int) -> int:
    """The quota the members report (etcd 3.6 and later), else the configured one."""
    for member in cluster.members:
        if not member.client_urls:
            continue
        try:
            status = client.call(member.client_urls[0], "/v3/maintenance/status")
        except (EtcdError, Unreachable):
            continue
        quota = int(str(status.get("dbSizeQuota", 0)))
        if quota > 0:
            return quota
    return effective_quota(configured)


def wait_healthy(client: EtcdClient, url: str, seconds: float) -> str:
    """ "" once `url` answers /health again, else the last reason."""
    deadline = Deadline(seconds)
    reason = ""
    while not deadline.expired():
        healthy, reason = client.health(url, HEALTH_QUERY)
        if healthy:
            return ""
        time.sleep(0.5)
    return reason


def disarm(
    client: EtcdClient,
    cluster: ClusterView,
    spaces: Sequence[MemberSpace],
    alarmed: Sequence[str],
    quota: int,
    log: Log,
) -> int:
    names = {space.id: space.name for space in spaces}
    alarmed_names = ", ".join(sorted(names.get(i, i) for i in alarmed))
    full = over_quota(spaces, quota)
    if full:
        sizes = ", ".join(f"{s.name} db={mib(s.db_size)}" for s in full)
        log(
            f"NOSPACE alarm on {alarmed_names} -> kept: {sizes} still at or above the quota"
            f" {mib(quota)}; compact the history (auto-compaction, or `etcdctl compact`) and run"
            " the defragmentation again, or raise config.quotaBackendBytes"
        )
        return 1
    endpoints = [m.client_urls[0] for m in cluster.members if m.client_urls]
    for member_id in alarmed:
        body = {"action": "DEACTIVATE", "memberID": member_id, "alarm": "NOSPACE"}
        for url in endpoints:
            try:
                client.call(url, "/v3/maintenance/alarm", body)
            except Unreachable:
                continue
            except EtcdError as err:
                log(f"NOSPACE alarm on {names.get(member_id, member_id)} -> not disarmed: {err}")
                return 1
            break
    largest = max(space.db_size for space in spaces)
    log(
        f"NOSPACE alarm on {alarmed_names} -> disarmed: every database is below the quota"
        f" {mib(quota)} (largest {mib(largest)}); writes are accepted again"
    )
    return 0


def run_defrag(
    settings: Settings,
    log: Log,
    replicas: int,
    policy: Policy,
    configured_quota: int,
    timeout: float,
    defrag_timeout: float,
) -> int:
    settings.require("statefulset", "namespace", "headless_service")
    sts = settings.statefulset
    context = tls_context(settings)
    client = EtcdClient(context, settings.root_password_file)
    # Defragmenting a large database takes a while, and the member answers only when done.
    slow_client = EtcdClient(context, settings.root_password_file, timeout=defrag_timeout)
    endpoints = [settings.pod_client_url(f"{sts}-{i}") for i in range(replicas)]
    endpoints += [
        settings.pod_client_url(f"{sts}-{i}") for i in range(replicas, replicas + FALLBACK_ORDINALS)
    ]
    deadline = Deadline(timeout)
    done: set[str] = set()
    judged: set[str] = set()
    first = True
    while True:
        cluster, errors = cluster_view(client, endpoints)
        patience = Deadline(ELECTION_SECONDS)
        while cluster is None and not patience.expired():
            time.sleep(1)
            cluster, errors = cluster_view(client, endpoints)
        if cluster is None:
            log(
                f"cluster=unreachable -> {'refusing' if first else 'stopping'}: no member answers"
                f" with quorum ({errors})"
            )
            return 1
        spaces, sick, nospace = survey(client, cluster)
        seen = f"cluster={cluster.describe()}"
        if sick:
            action = "refusing to start" if first else "stopping"
            log(f"{seen} -> {action}: not every member is healthy: {'; '.join(sick)}")
            return 1
        for space in spaces:
            if space.id not in judged and space.id not in done:
                go, why = verdict(space, policy, bool(nospace))
                log(f"{space.describe()} -> {'to defragment' if go else 'skipped'}: {why}")
                judged.add(space.id)
        first = False
        target = next_member(spaces, policy, bool(nospace), done)
        if target is None:
            if nospace:
                quota = live_quota(client, cluster, configured_quota)
                return disarm(client, cluster, spaces, nospace, quota, log)
            log(f"{seen} -> done: {len(done)} of {len(spaces)} members defragmented")
            return 0
        if deadline.expired():
            log(f"{seen} -> giving up before {target.name} (--timeout {timeout:g}s)")
            return 1
        member = next(m for m in cluster.members if m.id == target.id)
        url = member.client_urls[0]
        log(f"{target.describe()} -> defragmenting")
        started = time.monotonic()
        try:
            slow_client.call(url, "/v3/maintenance/defragment")
        except (EtcdError, Unreachable) as err:
            log(f"{target.name} -> stopping: the defragmentation failed: {err}")
            return 1
        took = time.monotonic() - started
        done.add(target.id)
        reason = wait_healthy(client, url, RECOVERY_SECONDS)
        if reason:
            log(
                f"{target.name} -> stopping: not healthy {RECOVERY_SECONDS:g}s after its"
                f" defragmentation: {reason}"
            )
            return 1
        after = ""
        try:
            status = client.call(url, "/v3/maintenance/status")
            after = f" db={mib(int(str(status.get('dbSize', 0))))}"
        except (EtcdError, Unreachable):
            pass
        log(
            f"{target.name} ({target.role}) -> defragmented in {took:.1f}s:"
            f" db={mib(target.db_size)} before,{after or ' size unknown'} after"
        )
