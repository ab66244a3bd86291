"""Which members a scale-down removes, and whether it may go on when no member answers: pure
functions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from members import Member
from urls import ordinal_of

# Scale-down asks pods 0..N-1 first; these higher ordinals only when none of those answers.
FALLBACK_ORDINALS = 8


def scale_down_targets(
    members: Sequence[Member], statefulset: str, replicas: int
) -> list[tuple[int, Member]]:
    """Members whose pod ordinal is >= replicas, highest ordinal first."""
    targets = []
    for member in members:
        ordinal = ordinal_of(member.label, statefulset)
        if ordinal is not None and ordinal >= replicas:
            targets.append((ordinal, member))
    return sorted(targets, key=lambda item: -item[0])


def remaining_voters(
    members: Sequence[Member], statefulset: str, replicas: int, target: Member
) -> list[Member]:
    """The voters that stay: every voter but `target` whose ordinal is below `replicas`."""
    keep = []
    for member in members:
        ordinal = ordinal_of(member.label, statefulset)
        if member.id == target.id or member.is_learner:
            continue
        if ordinal is None or ordinal < replicas:
            keep.append(member)
    return keep


# How out of a blocked scale-down, and what each way risks.
SCALE_DOWN_WAY_OUT = (
    "to go on without the hook: `helm upgrade --no-hooks` (this upgrade only) or"
    " scaleDown.enabled=false (every later upgrade): either way the pods above the new count go"
    " while still members, and stay in the member list as down voters that count against quorum"
    " until removed by hand (etcdctl member remove)"
)


STS_PRESENT, STS_ABSENT, STS_UNKNOWN = "present", "absent", "unknown"


def unreachable_verdict(replicas: int, sts_state: str, live: int, detail: str) -> tuple[bool, str]:
    """With the cluster created and no member answering: (go on, what to log after `->`).

    Only a real scale-down needs a member to answer; an upgrade that keeps or raises the count
    may be the one that repairs a full outage, and with no StatefulSet no member pod runs."""
    if sts_state == STS_ABSENT:
        return True, (
            "nothing to remove: no StatefulSet, so no member pod runs; the members come back on"
            " their data when it is created"
        )
    if sts_state == STS_PRESENT and live <= replicas:
        return True, (
            f"nothing to remove: not a scale-down (the StatefulSet has {live} replicas, the"
            f" upgrade asks for {replicas}); the upgrade goes on and may bring the members back"
        )
    if sts_state == STS_PRESENT:
        why = (
            f"a scale-down from {live} to {replicas} needs a healthy cluster to remove members"
            " from, and no member answers"
        )
    else:
        why = f"cannot tell whether this is a scale-down ({detail}), and no member answers"
    return False, f"refusing: {why}"
