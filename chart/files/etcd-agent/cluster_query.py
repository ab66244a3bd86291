"""Asking the cluster: the member list from the first member that answers with quorum, and
membership changes sent to the first voter that answers."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from errors import AgentError, Retry
from etcd_client import EtcdClient, EtcdError, Unreachable
from members import ClusterView, Member
from urls import pod_name_of

T = TypeVar("T")


def list_members(
    client: EtcdClient, endpoint: str, linearizable: bool = True
) -> tuple[list[Member], dict[str, Any]]:
    answer = client.call(endpoint, "/v3/cluster/member/list", {"linearizable": linearizable})
    members = [Member.from_json(item) for item in answer.get("members") or ()]
    return members, dict(answer.get("header") or {})


def first_answer(
    endpoints: Sequence[str], ask: Callable[[str], T]
) -> tuple[str, T] | tuple[None, list[str]]:
    """Ask every endpoint at once; the first answer wins. Else (None, one error per endpoint)."""
    if not endpoints:
        return None, ["no endpoint to ask"]
    errors: list[str] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(endpoints))
    try:
        futures = {pool.submit(ask, endpoint): endpoint for endpoint in endpoints}
        for future in concurrent.futures.as_completed(futures):
            endpoint = futures[future]
            try:
                return endpoint, future.result()
            except (EtcdError, Unreachable, AgentError) as err:
                message = err.message if isinstance(err, EtcdError) else str(err)
                if isinstance(err, Unreachable):
                    message = err.reason
                errors.append(f"{pod_name_of(endpoint)}: {message}")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return None, sorted(errors)


def cluster_view(client: EtcdClient, endpoints: Sequence[str]) -> tuple[ClusterView | None, str]:
    """The member list from the first member that answers with quorum; else (None, errors)."""

    def ask(endpoint: str) -> ClusterView:
        members, header = list_members(client, endpoint)
        try:
            leader = str(client.call(endpoint, "/v3/maintenance/status").get("leader", ""))
        except (EtcdError, Unreachable):
            leader = ""
        return ClusterView(tuple(members), leader, str(header.get("cluster_id", "")), endpoint)

    endpoint, result = first_answer(endpoints, ask)
    if endpoint is None:
        assert isinstance(result, list)
        return None, "; ".join(result)
    assert isinstance(result, ClusterView)
    return result, ""


def call_first(
    client: EtcdClient, endpoints: Sequence[str], path: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    """POST to the endpoints in order until one answers; an etcd error is final."""
    problems = []
    for endpoint in endpoints:
        try:
            return client.call(endpoint, path, body)
        except Unreachable as err:
            problems.append(str(err))
    raise Retry("no member answered: " + "; ".join(problems or ["no endpoint"]))
