"""Which member `defrag` defragments next, and whether a NOSPACE alarm may be disarmed: pure
functions of what the members answered, no I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

# etcd's quota when quota-backend-bytes is 0 or unset.
DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class MemberSpace:
    """One member's database as its /v3/maintenance/status answered."""

    id: str
    name: str
    db_size: int
    db_size_in_use: int
    is_leader: bool = False

    @property
    def free_bytes(self) -> int:
        return max(0, self.db_size - self.db_size_in_use)

    @property
    def fragmented_percent(self) -> float:
        """(dbSize - dbSizeInUse) / dbSize: the share a defragmentation gives back."""
        return 100.0 * self.free_bytes / self.db_size if self.db_size > 0 else 0.0

    @property
    def role(self) -> str:
        return "leader" if self.is_leader else "follower"

    def describe(self) -> str:
        return (
            f"{self.name} ({self.role}) db={mib(self.db_size)} in-use={mib(self.db_size_in_use)}"
            f" fragmented={self.fragmented_percent:.0f}%"
        )


@dataclasses.dataclass(frozen=True)
class Policy:
    threshold_percent: float
    min_db_bytes: int


def mib(size: int) -> str:
    """A size for the log: MiB, or KiB below one MiB."""
    if size < 1048576:
        return f"{size / 1024:.0f}KiB"
    return f"{size / 1048576:.1f}MiB"


def verdict(space: MemberSpace, policy: Policy, nospace: bool) -> tuple[bool, str]:
    """(defragment it, why). With a NOSPACE alarm raised any member with free pages counts: the
    cluster refuses writes until every database is back below the quota."""
    if nospace:
        if space.free_bytes > 0:
            return True, "a NOSPACE alarm is raised and it has free pages to give back"
        return False, "nothing to give back (no free pages)"
    if space.db_size < policy.min_db_bytes:
        return False, f"smaller than defrag.minDbSizeBytes ({mib(policy.min_db_bytes)})"
    if space.fragmented_percent < policy.threshold_percent:
        return False, f"below defrag.thresholdPercent ({policy.threshold_percent:g}%)"
    return True, f"at or above defrag.thresholdPercent ({policy.threshold_percent:g}%)"


def next_member(
    spaces: Sequence[MemberSpace], policy: Policy, nospace: bool, done: Collection[str]
) -> MemberSpace | None:
    """The next member to defragment: followers first (by name), the leader last, each once.

    Defragmenting a member blocks its reads and writes while it runs; on the leader that stalls
    the whole cluster's writes, so it goes last, when the followers are already done."""
    candidates = [
        space for space in spaces if space.id not in done and verdict(space, policy, nospace)[0]
    ]
    candidates.sort(key=lambda space: (space.is_leader, space.name))
    return candidates[0] if candidates else None


def over_quota(spaces: Sequence[MemberSpace], quota: int) -> list[MemberSpace]:
    """The members whose database is still at or above the quota (etcd raises NOSPACE when a
    write would take the database file past it, however much of it is free)."""
    return [space for space in spaces if space.db_size >= quota]


def effective_quota(configured: int) -> int:
    return configured if configured > 0 else DEFAULT_QUOTA_BYTES
