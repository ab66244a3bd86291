"""`watch`, the sidecar: promote the learner, keep the cluster record and auth in place, notice
a removed member, restart itself when its code changes."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Mapping

from auth_apply import apply_auth, auth_fingerprint
from auth_spec import load_auth_spec
from cluster_query import call_first, cluster_view
from errors import AgentError, Retry
from etcd_client import EtcdClient, EtcdError, Unreachable
from etcd_config import load_template
from kube_client import (
    KubeClient,
    KubeError,
    _configmap_path,
    read_record,
    read_statefulset_replicas,
)
from members import ClusterView, voter_endpoints
from runtime import Backoff, Deadline, Log
from scale_down_decision import FALLBACK_ORDINALS, STS_PRESENT
from settings import Settings, tls_context
from start_decision import RECORD_PRESENT, RECORD_UNKNOWN
from urls import format_initial_cluster, hex_id, parse_initial_cluster, split_urls


def own_code() -> bytes:
    """A digest of this program's modules as they are now on disk (the agent ConfigMap's
    mounted files); b"" when they cannot be read."""
    directory = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    try:
        for name in sorted(os.listdir(directory)):
            if name.endswith(".py") and not name.startswith("."):
                with open(os.path.join(directory, name), "rb") as handle:
                    digest.update(name.encode() + b"\0" + handle.read() + b"\0")
    except OSError:
        return b""
    return digest.digest()


@dataclasses.dataclass
class WatchState:
    voter: bool = False
    record: bool = False
    record_said: str = ""
    auth_applied: str = ""  # auth_fingerprint() of what was last applied
    absent_since: float | None = None
    pod_deleted: bool = False
    rejoin_after: float = 0.0


def removed_member_step(settings: Settings, kube: KubeClient, state: WatchState, seen: str) -> str:
    """This member is not in the cluster's (quorum) member list, so its etcd exits at once on
    every restart, and `prepare` (an init container) runs again only in a new pod. When the
    StatefulSet still wants this pod and that has lasted --rejoin-after (longer than any
    scale-down hook runs), delete the pod. Returns what to log."""
    seen += " member=absent"
    pod = settings.pod_name
    deleted = (
        f"{seen} -> deleted pod {pod} so that it is recreated: its prepare moves the removed"
        " member's data aside and joins again"
    )
    if state.pod_deleted:
        return deleted
    removed = f"{seen} -> this member was removed from the cluster"
    by_hand = f"recreate the pod (kubectl delete pod {pod}) so that its prepare joins again"
    match = re.fullmatch(r"(.+)-([0-9]+)", pod)
    if not match or not settings.record or state.rejoin_after <= 0:
        return f"{removed}, and etcd exits at once on every restart: {by_hand}"
    sts, ordinal = match.group(1), int(match.group(2))
    sts_state, live, detail = read_statefulset_replicas(kube, settings.namespace, sts)
    if sts_state == STS_PRESENT and live <= ordinal:
        state.absent_since = None
        return (
            f"{removed}; the StatefulSet has {live} replicas, so {pod} is on its way out: waiting"
        )
    if sts_state != STS_PRESENT:
        why = detail or f"StatefulSet {settings.namespace}/{sts} not found"
        return f"{removed}, and etcd exits at once on every restart ({why}): {by_hand}"
    now = time.monotonic()
    if state.absent_since is None:
        state.absent_since = now
    if now - state.absent_since < state.rejoin_after:
        return (
            f"{removed}, and etcd exits at once on every restart; the StatefulSet still has"
            f" {live} replicas: deleting pod {pod} once this has lasted {state.rejoin_after:g}s,"
            " so that it is recreated and its prepare joins again"
        )
    path = f"/api/v1/namespaces/{urllib.parse.quote(settings.namespace)}/pods/"
    path += urllib.parse.quote(pod)
    try:
        status, answer = kube.request("DELETE", path)
    except KubeError as err:
        return f"{removed}; cannot delete pod {pod}: {err}: {by_hand}"
    if status not in (200, 202):
        return (
            f"{removed}; cannot delete pod {pod}: HTTP {status} {answer.get('message', '')}:"
            f" {by_hand}"
        )
    state.pod_deleted = True
    return deleted


def ensure_record(kube: KubeClient, settings: Settings, cluster: ClusterView, token: str) -> str:
    """Create the cluster record if missing; keep its member list current. Returns what it did."""
    name = f"{settings.namespace}/{settings.record}"
    state, data, detail = read_record(kube, settings.namespace, settings.record)
    cluster_id = hex_id(cluster.cluster_id)
    members = format_initial_cluster(
        [
            (m.label, url)
            for m in sorted(cluster.members, key=lambda m: m.label)
            for url in m.peer_urls
        ]
    )
    if state == RECORD_UNKNOWN:
        raise Retry(f"cannot read the cluster record {name}: {detail}")
    if state == RECORD_PRESENT:
        if data.get("clusterID") != cluster_id:
            return (
                f"WARNING: the cluster record {name} names cluster {data.get('clusterID')}, but"
                f" this cluster is {cluster_id}: two clusters under one name? record left as is"
            )
        if data.get("members") == members:
            return f"cluster record {name} is current"
        try:
            status, answer = kube.request(
                "PATCH",
                _configmap_path(settings.namespace, settings.record),
                {"data": {"members": members}},
                "application/merge-patch+json",
            )
        except KubeError as err:
            raise Retry(str(err)) from None
        if status != 200:
            raise Retry(f"PATCH ConfigMap {name}: HTTP {status} {answer.get('message', '')}")
        return f"updated the members of cluster record {name}: {members}"
    data = {
        "clusterID": cluster_id,
        "token": token,
        "createdAt": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "members": members,
    }
    if settings.restored_from:
        # The release started from a snapshot (restore.snapshot): say which, for whoever reads
        # the record later.
        data["restoredFrom"] = settings.restored_from
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": settings.record,
            "namespace": settings.namespace,
            "labels": {"app.kubernetes.io/managed-by": "etcd-member-agent"},
        },
        "data": data,
    }
    try:
        status, answer = kube.request("POST", _configmap_path(settings.namespace), body)
    except KubeError as err:
        raise Retry(str(err)) from None
    if status == 409:
        return f"cluster record {name} was just created by another member"
    if status not in (200, 201):
        raise Retry(f"POST ConfigMap {name}: HTTP {status} {answer.get('message', '')}")
    return f"created the cluster record {name} (cluster {cluster_id})"


def watch_step(
    settings: Settings,
    client: EtcdClient,
    kube: KubeClient,
    own: tuple[str, tuple[str, ...], str],
    endpoints: list[str],
    state: WatchState,
    log: Log,
) -> bool:
    """One pass; True once everything this member has to do is done."""
    name, peer_urls, token = own
    cluster, errors = cluster_view(client, endpoints)
    if cluster is None:
        raise Retry(f"cluster=unreachable (asked: {errors}) -> waiting")
    for member in cluster.members:
        for url in member.client_urls:
            if url not in endpoints:
                endpoints.append(url)
    me = cluster.find(peer_urls, name)
    seen = f"cluster={cluster.describe()}"
    if me is None and peer_urls:
        raise Retry(removed_member_step(settings, kube, state, seen))
    if me is None:
        raise Retry(f"{seen} member=absent -> waiting (this agent never adds members)")
    state.absent_since = None
    if me.is_learner:
        targets = voter_endpoints(cluster, exclude=me.id)
        try:
            call_first(client, targets, "/v3/cluster/member/promote", {"ID": me.id})
        except EtcdError as err:
            raise Retry(
                f"{seen} member=learner {hex_id(me.id)} -> not promoted yet: {err.message}"
            ) from None
        log(f"{seen} member=learner {hex_id(me.id)} -> promoted to voter")
        state.voter = True
        return False
    if not me.started or not cluster.leader:
        raise Retry(f"{seen} member=voter started={'yes' if me.started else 'no'} -> waiting")
    if not state.voter:
        state.voter = True
        log(f"{seen} member=voter {hex_id(me.id)} -> nothing to promote")
    if settings.record:
        # Every pass, not once: a deleted record is written again, the member list kept current.
        did = ensure_record(kube, settings, cluster, token)
        quiet = did.endswith(" is current") or did.startswith("WARNING")
        if not state.record or not quiet or did != state.record_said:
            log(f"{seen} member=voter -> {did}")
        state.record_said = did
    state.record = True
    # Every pass: users, roles and passwords change at run time, without a restart.
    spec = load_auth_spec(settings.auth_file)
    if spec is not None:
        fingerprint = auth_fingerprint(settings.auth_file, spec, settings.root_password_file)
        if fingerprint != state.auth_applied:
            try:
                done = apply_auth(client, cluster.endpoint, spec, settings.root_password_file)
            except EtcdError as err:
                raise Retry(f"{seen} -> auth.json not applied yet: {err}") from None
            changed = " (auth.json or a password changed)" if state.auth_applied else ""
            log(f"{seen} member=voter -> {done}{changed}")
            state.auth_applied = fingerprint
    return True


def sibling_endpoints(settings: Settings) -> list[str]:
    """Client URLs of this pod and its StatefulSet siblings by DNS name: a learner refuses the
    member list, so without the template these are the only way to find the voters."""
    match = re.fullmatch(r"(.+)-([0-9]+)", settings.pod_name)
    if not match or not settings.headless_service or not settings.namespace:
        return []
    statefulset, own = match.group(1), int(match.group(2))
    ordinals = range(own + FALLBACK_ORDINALS // 2 + 1)
    return [settings.pod_client_url(f"{statefulset}-{i}") for i in ordinals]


def run_watch(
    settings: Settings,
    env: Mapping[str, str],
    log: Log,
    once: bool,
    interval: float,
    timeout: float,
    rejoin_after: float = 0,
) -> int:
    settings.require("pod_name")
    name, token = settings.pod_name, ""
    peer_urls: tuple[str, ...] = ()
    endpoints: list[str] = []
    if os.path.exists(settings.template):
        config = load_template(settings.template, env)
        name = str(config["name"])
        token = str(config.get("initial-cluster-token", ""))
        peer_urls = tuple(split_urls(str(config["initial-advertise-peer-urls"])))
        endpoints = [settings.client_url(url) for url in peer_urls]
        bootstrap = parse_initial_cluster(str(config.get("initial-cluster", "")))
        endpoints += [settings.client_url(url) for _, url in bootstrap]
    endpoints += sibling_endpoints(settings)
    endpoints = list(dict.fromkeys(endpoints))
    load_auth_spec(settings.auth_file)  # a broken file is an error now, not after the first pass
    code = own_code()
    client = EtcdClient(tls_context(settings), settings.root_password_file)
    kube = KubeClient(env)
    state = WatchState(rejoin_after=rejoin_after)
    backoff, deadline = Backoff(), Deadline(timeout if once else 0)
    while True:
        try:
            done = watch_step(
                settings, client, kube, (name, peer_urls, token), endpoints, state, log
            )
        except Retry as err:
            done = False
            delay = backoff.next(str(err))
            if deadline.expired(delay):
                log(f"{err}; giving up (--timeout)")
                return 2
            if str(err) != log.last:
                log(str(err))
            time.sleep(delay)
            continue
        except (EtcdError, Unreachable, AgentError) as err:
            log(f"error: {err}")
            if once:
                return 1
            time.sleep(backoff.next())
            continue
        backoff.reset()
        if done and once:
            return 0
        if not once and own_code() not in (code, b""):
            # An upgrade changed the agent: run the new one in this container, leaving etcd (the
            # other container) running. The pods are not restarted for agent changes.
            log("the agent's code changed (agent ConfigMap updated) -> restarting the agent")
            os.execv(sys.executable, [sys.executable, *sys.argv])
        time.sleep(interval if done else 0.2)
