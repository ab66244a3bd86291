"""The member list as etcd answers it: plain data and what can be read off it, no I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from urls import hex_id, normalize_url, pod_name_of


@dataclasses.dataclass(frozen=True)
class Member:
    id: str
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Member:
        return cls(
            id=str(data.get("ID", "")),
            name=str(data.get("name", "")),
            peer_urls=tuple(str(url) for url in data.get("peerURLs") or ()),
            client_urls=tuple(str(url) for url in data.get("clientURLs") or ()),
            is_learner=bool(data.get("isLearner", False)),
        )

    @property
    def started(self) -> bool:
        # A member publishes its client URLs when it first starts. Bootstrap members carry
        # their name from initial-cluster before that, so the name alone proves nothing.
        return bool(self.client_urls)

    @property
    def label(self) -> str:
        """Its name, or for a member that never started the pod its peer URL points at."""
        if self.name:
            return self.name
        return pod_name_of(self.peer_urls[0]) if self.peer_urls else hex_id(self.id)

    def has_peer_url(self, urls: Sequence[str]) -> bool:
        wanted = {normalize_url(url) for url in urls}
        return any(normalize_url(url) in wanted for url in self.peer_urls)


@dataclasses.dataclass(frozen=True)
class ClusterView:
    """A member list answered by a member that has quorum (a linearizable request)."""

    members: tuple[Member, ...]
    leader: str = ""
    cluster_id: str = ""
    endpoint: str = ""

    def describe(self) -> str:
        leader = f"leader {hex_id(self.leader)}" if self.leader else "leader unknown"
        return f"reachable({len(self.members)} members, {leader})"

    def find(self, peer_urls: Sequence[str], name: str = "") -> Member | None:
        for member in self.members:
            if member.has_peer_url(peer_urls):
                return member
        if name:
            for member in self.members:
                if member.name == name:
                    return member
        return None


def voter_endpoints(cluster: ClusterView, exclude: str = "") -> list[str]:
    """Client URLs of started voters (the answering one first), never member `exclude`."""
    urls = [cluster.endpoint] if cluster.endpoint else []
    for member in cluster.members:
        if member.id == exclude or member.is_learner or not member.started:
            continue
        for url in member.client_urls:
            if url not in urls:
                urls.append(url)
    return urls
