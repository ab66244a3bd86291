"""What a healthy etcd member set looks like from outside, for the scenarios and bench/lifecycle.py.

`wait_converged` polls a sandbox until the member list equals the StatefulSet's pods, every member
votes and has started, and `etcdctl endpoint health --cluster` passes on all of them; it returns
the member IDs by name, or fails with the last thing it saw. Members are reached through
`etcd-chart sandbox etcdctl`, inside a pod's mount namespace, where the pods' DNS names resolve.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from etcd_chart.sandbox.client import Sandbox
from ledger import ClientTLS, Endpoint, Ledger, endpoint_from_url

# (scenario step, longest write outage in seconds, writes acknowledged so far), printed by
# conftest.py in the terminal summary.
WRITE_OUTAGES: list[tuple[str, float, int]] = []
OUTAGE_PROPERTY = "write_outage"  # their name in a test report's user_properties

# Starts a background writer on a sandbox's members (the `writer` fixture of conftest.py).
Writer = Callable[..., Ledger]  # (sandbox, user=(name, password) when etcd auth is on)


def statefulset_pods(sb: Sandbox, name: str = "etcd") -> list[str]:
    return sorted(
        (p["name"] for p in sb.status()["pods"] if p["owner"] == f"StatefulSet/{name}"),
        key=ordinal,
    )


def ordinal(pod: str) -> int:
    return int(pod.rsplit("-", 1)[1])


def pod_names(replicas: int, name: str = "etcd") -> list[str]:
    return [f"{name}-{i}" for i in range(replicas)]


def endpoints(status: dict[str, Any], pods: list[str]) -> list[Endpoint]:
    """Client endpoints of `pods` (by address, with the DNS name their certificate carries)."""
    by_name = {p["name"]: p for p in status["pods"]}
    found = []
    for pod in pods:
        entry = by_name.get(pod)
        if entry and entry.get("advertised_client_url"):
            found.append(endpoint_from_url(entry["advertised_client_url"], entry["address"]))
    return found


def client_tls(status: dict[str, Any]) -> ClientTLS | None:
    for pod in status["pods"]:
        files = pod.get("tls")
        if files:
            return ClientTLS(files["ca"], files["cert"], files["key"])
    return None


def etcdctl_json(sb: Sandbox, pod: str, *args: str) -> Any:
    result = sb.etcdctl(pod, *args, "-w", "json", timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"etcdctl {' '.join(args)} in {pod}: {result.stderr.strip()}")
    return json.loads(result.stdout)


def members(sb: Sandbox, pod: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = etcdctl_json(sb, pod, "member", "list")["members"]
    return found


def leader(sb: Sandbox, pod: str) -> str:
    """The name of the member that leads, as `pod` sees it."""
    status = etcdctl_json(sb, pod, "endpoint", "status")
    leader_id = status[0]["Status"]["leader"]
    return next(m["name"] for m in members(sb, pod) if m["ID"] == leader_id)


def server_version(sb: Sandbox, pod: str) -> str:
    """The etcd release the member in `pod` runs, as it reports itself."""
    return str(etcdctl_json(sb, pod, "endpoint", "status")[0]["Status"]["version"])


def cluster_id(sb: Sandbox, pod: str) -> int:
    return int(etcdctl_json(sb, pod, "endpoint", "status")[0]["Status"]["header"]["cluster_id"])


@dataclass
class Observation:
    """One look at the member set: what is wrong with it, or nothing."""

    ids: dict[str, int]
    problems: list[str]


def observe(sb: Sandbox, replicas: int, name: str = "etcd") -> Observation:
    expected = pod_names(replicas, name)
    pods = statefulset_pods(sb, name)
    if pods != expected:
        return Observation({}, [f"pods are {pods}, expected {expected}"])
    status = sb.status()
    not_ready = [p["name"] for p in status["pods"] if p["name"] in pods and not p["ready"]]
    if not_ready:
        return Observation({}, [f"pods not ready: {not_ready}"])
    problems = []
    try:
        listed = members(sb, pods[0])
        health = etcdctl_json(sb, pods[0], "endpoint", "health", "--cluster")
    except RuntimeError as err:
        return Observation({}, [str(err)])
    names = sorted((m.get("name", "") for m in listed), key=lambda n: (len(n), n))
    if names != expected:
        problems.append(f"member list is {names}, expected {expected}")
    learners = [m.get("name") for m in listed if m.get("isLearner")]
    if learners:
        problems.append(f"learners left: {learners}")
    unstarted = [hex(m["ID"]) for m in listed if not m.get("clientURLs")]
    if unstarted:
        problems.append(f"members added but never started: {unstarted}")
    unhealthy = [h["endpoint"] for h in health if not h.get("health")]
    if len(health) != replicas or unhealthy:
        problems.append(f"endpoint health: {len(health)} endpoints, unhealthy {unhealthy}")
    return Observation({m["name"]: int(m["ID"]) for m in listed}, problems)


def wait_converged(
    sb: Sandbox, replicas: int, timeout: float = 90, name: str = "etcd"
) -> dict[str, int]:
    """Member IDs by name once the member set is exactly the pods, all voting and healthy."""
    deadline = time.monotonic() + timeout
    while True:
        seen = observe(sb, replicas, name)
        if not seen.problems:
            return seen.ids
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the member set did not converge to {replicas} healthy voters in {timeout:.0f} s: "
                + "; ".join(seen.problems)
            )
        time.sleep(0.5)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def settle(sb: Sandbox, ledger: Ledger, replicas: int, step: str) -> dict[str, int]:
    """Wait for a converged member set, point the writer at it, note the step's outage."""
    ids = wait_converged(sb, replicas)
    ledger.set_endpoints(endpoints(sb.status(), pod_names(replicas)))
    WRITE_OUTAGES.append((step, ledger.take_outage(), len(ledger.acknowledged)))
    return ids


def assert_nothing_lost(sb: Sandbox, ledger: Ledger, replicas: int) -> None:
    before = len(ledger.acknowledged)
    time.sleep(1)
    ledger.stop()
    assert len(ledger.acknowledged) > before, (
        f"the writer made no progress on the final cluster (last error: {ledger.last_error})"
    )
    for endpoint in endpoints(sb.status(), pod_names(replicas)):
        assert ledger.verify(endpoint) == [], f"acknowledged writes missing on {endpoint}"


def change_members(sb: Sandbox, pod: str, *args: str) -> None:
    """`etcdctl member ARGS` through `pod`, retried while etcd refuses a change because a member
    (re)connected less than 5 s ago ("unhealthy cluster")."""
    for _ in range(30):
        result = sb.etcdctl(pod, "member", *args)
        if result.returncode == 0 or "unhealthy cluster" not in result.stderr:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stderr
