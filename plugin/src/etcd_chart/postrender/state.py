"""initial-cluster-state: `new` for a cluster that does not exist yet, `existing` once it does.

Decision, for one member set:
1. an explicit value wins: the StatefulSet annotation `etcd-chart/initial-cluster-state`, else
   the option `--initial-cluster-state` / env `ETCD_CHART_INITIAL_CLUSTER_STATE`;
2. else, with a reachable cluster: `existing` when the StatefulSet or its cluster record
   ConfigMap `<statefulset>-cluster-record` exists, else `new`;
3. else (offline): what the manifest says, unchanged, so offline output stays deterministic.

An explicit `new` for a cluster that is seen to exist is refused: never `new` over a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

STATES = ("new", "existing")


def record_name(statefulset: str) -> str:
    return f"{statefulset}-cluster-record"


@dataclass(frozen=True)
class LiveFacts:
    """What a reachable cluster says about one member set."""

    statefulset_exists: bool
    record_exists: bool

    @property
    def cluster_exists(self) -> bool:
        return self.statefulset_exists or self.record_exists

    def evidence(self, statefulset: str) -> str:
        seen = []
        if self.statefulset_exists:
            seen.append(f"StatefulSet {statefulset}")
        if self.record_exists:
            seen.append(f"ConfigMap {record_name(statefulset)}")
        return " and ".join(seen)


@dataclass(frozen=True)
class Decision:
    state: str | None  # None: leave the manifest as it is
    reason: str
    refused: str = ""  # non-empty: a contradiction that must stop the run


def decide(
    annotation: str | None,
    option: str | None,
    live: LiveFacts | None,
    current: str | None,
    statefulset: str = "",
) -> Decision:
    explicit, origin = (annotation, "annotation") if annotation else (option, "option")
    if explicit:
        if live is not None and explicit == "new" and live.cluster_exists:
            return Decision(
                None,
                origin,
                f"initial-cluster-state new was asked for ({origin}), but the cluster exists "
                f"({live.evidence(statefulset)})",
            )
        return Decision(explicit, origin)
    if live is not None:
        return Decision("existing" if live.cluster_exists else "new", "cluster")
    return Decision(None, "offline") if current is None else Decision(current, "manifest")
