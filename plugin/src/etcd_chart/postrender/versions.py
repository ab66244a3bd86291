"""The etcd version changes a rolling upgrade can take, checked against the running members.

etcd supports two kinds of upgrade (https://etcd.io/docs/v3.6/upgrades/upgrading-etcd/,
"Upgrade policy"): between patch releases of one minor version, and one minor version at a
time; skipping a minor version "is not supported and will likely fail". A minor downgrade is not
a rolling change either: from 3.6 on it needs etcd's own downgrade procedure first (`etcdctl
downgrade validate/enable`, https://etcd.io/docs/v3.6/downgrades/downgrading-etcd/), which the
chart does not run. And some steps need a minimum patch release of the running minor first (the
table below).

The running version is read off the live pods' etcd image and the live StatefulSet's template
(a rollout may be half done); an image pinned by digest only names no version, and then nothing
is checked and a note says so. The StatefulSet annotation `etcd-chart/allow-unsupported-version-
change: "true"` (chart value `upgrade.allowUnsupportedVersionChange`) turns the refusals into
warnings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from etcd_chart.postrender.checks import place
from etcd_chart.postrender.members import Lookup, MemberSet
from etcd_chart.report import Report

ALLOW_ANNOTATION = "etcd-chart/allow-unsupported-version-change"

Version = tuple[int, int, int]

# The lowest patch release of a minor version that may be upgraded to the next minor.
# 3.5 -> 3.6: "make sure that all of your 3.5 members are updated to 3.5.26 or later. Patch
#   releases 3.5.24 through 3.5.26 fix several potential upgrade blockers"
#   (https://etcd.io/docs/latest/upgrades/upgrade_3_6/; the "zombie members" fix of 3.5.26,
#   https://etcd.io/blog/2025/zombie_members_upgrade/, after the learner fix of 3.5.20,
#   https://etcd.io/blog/2025/upgrade_from_3.5_to_3.6_issue/).
# 3.6 -> 3.7: "make sure that all of your 3.6 members are updated to 3.6.11 or later"
#   (https://etcd.io/docs/v3.7/upgrades/upgrade_3_7/).
MINIMUM_PATCH_BEFORE_NEXT_MINOR: dict[tuple[int, int], int] = {(3, 5): 26, (3, 6): 11}

# A WAL keeps the raft entries 3.5 wrote until the member takes a raft snapshot on 3.6 (every
# snapshot-count entries), and etcd 3.7.3 panics replaying them ("unmarshal should never fail"):
# found by tests/e2e/test_day2_sandbox.py, not in etcd's upgrade guide. A cluster that comes from
# 3.5 takes one rolling restart on 3.6 with a snapshot on every entry before going on (README).
V2_ENTRIES_GONE_BY = (3, 6)
SNAPSHOT_STEP = ", then one rolling restart on it with config.snapshotCount=1"

# v3.6.16, 3.6.16, 3.6.16-0 (registry.k8s.io's image revision), 3.6.16-debian-12-r1 (Bitnami).
_TAG = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")


def image_version(image: str) -> Version | None:
    """The etcd version an image's tag names; None for no tag, `latest`, or a digest only."""
    name = image.split("@", 1)[0]
    tag = name.rpartition("/")[2].partition(":")[2]
    match = _TAG.match(tag)
    if not match:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def text(version: Version) -> str:
    return ".".join(str(part) for part in version)


@dataclass(frozen=True)
class Refusal:
    message: str
    fix: str


def safe_path(running: Version, target: Version) -> list[str]:
    """The supported steps from `running` up to `target`, each a release to run everywhere."""
    steps: list[str] = []
    major, minor, patch = running
    while (major, minor) < target[:2]:
        minimum = MINIMUM_PATCH_BEFORE_NEXT_MINOR.get((major, minor))
        if minimum is not None and patch < minimum:
            steps.append(f"{major}.{minor}.{minimum} or later")
        minor += 1
        if (major, minor) == target[:2]:
            break
        next_minimum = MINIMUM_PATCH_BEFORE_NEXT_MINOR.get((major, minor))
        at_least = f", at least {major}.{minor}.{next_minimum}" if next_minimum else ""
        step = f"the newest {major}.{minor} patch release{at_least}"
        if (major, minor) == V2_ENTRIES_GONE_BY and running[:2] < V2_ENTRIES_GONE_BY:
            step += SNAPSHOT_STEP
        steps.append(step)
        patch = next_minimum or 0
    steps.append(text(target))
    return steps


def check_change(running: Version, target: Version) -> Refusal | None:
    """Why etcd cannot roll from `running` to `target`, or None when it can."""
    change = f"changes etcd from {text(running)} to {text(target)}"
    if running[:2] == target[:2]:
        return None
    if running[0] != target[0]:
        return Refusal(
            f"{change}, a different major version; etcd upgrades one minor version at a time",
            f"keep image.tag at v{text(running)}",
        )
    if target[:2] < running[:2]:
        one_down = f"{running[0]}.{running[1] - 1}"
        return Refusal(
            f"{change}, a downgrade of the minor version: members of an older minor cannot"
            " read the data a newer one has written. etcd (3.6 and later) downgrades only through"
            f" its own procedure, one minor version at a time: `etcdctl downgrade validate"
            f" {one_down}`, `etcdctl downgrade enable {one_down}`,"
            " wait until the cluster version shows it, then replace the members one at a time",
            f"keep image.tag at v{text(running)}; to downgrade, run etcd's downgrade procedure"
            " first, then upgrade with upgrade.allowUnsupportedVersionChange=true",
        )
    path = " -> ".join([text(running), *safe_path(running, target)])
    if target[1] > running[1] + 1:
        skipped = ", ".join(f"{target[0]}.{m}" for m in range(running[1] + 1, target[1]))
        return Refusal(
            f"{change}, skipping {skipped}; etcd upgrades one minor version at a time and a"
            " skipped minor is not supported",
            f"upgrade in steps, every member Ready before the next step: {path}",
        )
    minimum = MINIMUM_PATCH_BEFORE_NEXT_MINOR.get(running[:2])
    if minimum is not None and running[2] < minimum:
        return Refusal(
            f"{change}; etcd's upgrade guide requires every {running[0]}.{running[1]} member to run"
            f" {running[0]}.{running[1]}.{minimum} or later before the upgrade to"
            f" {target[0]}.{target[1]}",
            f"upgrade in steps, every member Ready before the next step: {path}",
        )
    return None


def check_running(running: Iterable[Version], target: Version) -> list[Refusal]:
    """The refusals for moving every running version (a half-done rollout has two) to
    `target`, each once. Going back to the lowest running minor version undoes an unfinished
    upgrade, which etcd supports: its cluster version stays at the lowest member's until every
    member runs the new one, and nothing is written in the newer format before."""
    versions = sorted(set(running))
    lowest_minor = min((version[:2] for version in versions), default=target[:2])
    found: list[Refusal] = []
    for version in versions:
        if target[:2] < version[:2] and target[:2] >= lowest_minor:
            continue
        refusal = check_change(version, target)
        if refusal is not None and refusal not in found:
            found.append(refusal)
    return found


def _etcd_image(containers: object, name: str) -> str | None:
    if not isinstance(containers, list):
        return None
    for container in containers:
        if isinstance(container, dict) and container.get("name") == name:
            image = container.get("image")
            return image if isinstance(image, str) else None
    return None


def _pod_containers(body: dict[str, Any]) -> object:
    spec = body.get("spec")
    return spec.get("containers") if isinstance(spec, dict) else None


def check(
    member: MemberSet, live: MemberSet, lookup: Lookup, report: Report, notes: list[str]
) -> None:
    """Refuse (or, with the annotation, warn about) an image change etcd cannot roll through;
    say so when the versions cannot be told."""
    from etcd_chart.postrender.cluster import Forbidden

    if member.container is None or live.container is None:
        return
    image = str(member.container.get("image") or "")
    target = image_version(image)
    name = str(member.container.get("name") or "")
    where = f"{member.namespace}/{member.name}"
    if target is None:
        notes.append(
            f"{where}: the version change was not checked: image {image!r} names no etcd version"
            " (a digest or `latest`); make sure it is the running minor version or the next one"
        )
        return
    running: dict[Version, list[str]] = {}
    template_image = str(live.container.get("image") or "")
    template_version = image_version(template_image)
    if template_version is not None:
        running.setdefault(template_version, []).append("the live StatefulSet")
    unreadable = []
    try:
        for pod in live.pod_names():
            found = lookup("Pod", live.namespace, pod)
            if found is None:
                continue
            pod_image = _etcd_image(_pod_containers(found.body), name) or ""
            version = image_version(pod_image)
            if version is None:
                unreadable.append(f"{pod} ({pod_image or 'no ' + name + ' container'})")
            else:
                running.setdefault(version, []).append(pod)
    except Forbidden as err:
        notes.append(f"{where}: the running pods' versions were not read ({err})")
    if unreadable:
        notes.append(
            f"{where}: the running version of {', '.join(unreadable)} cannot be told from its"
            " image; those pods were not checked"
        )
    if not running:
        notes.append(
            f"{where}: the version change to {text(target)} was not checked: no running version"
            " could be told (images pinned by digest, or no pod readable)"
        )
        return
    refusals = check_running(running, target)
    allowed = str(member.annotations.get(ALLOW_ANNOTATION, "")).lower() == "true"
    for refusal in refusals:
        who = "; ".join(
            f"{text(v)} on {', '.join(sources)}"
            for v, sources in sorted(running.items())
            if check_change(v, target) == refusal
        )
        if allowed:
            notes.append(
                f"WARNING: {where}: {refusal.message} (running: {who}); passed because of"
                f" {ALLOW_ANNOTATION} (upgrade.allowUnsupportedVersionChange): etcd does not"
                f" support this change, members may fail to start on their data; the supported"
                f" way: {refusal.fix}"
            )
        else:
            report.add(
                place(member.statefulset, f"{member.container_path}.image"),
                f"{refusal.message} (running: {who})",
                refusal.fix
                if "allowUnsupportedVersionChange" in refusal.fix
                else f"{refusal.fix}; or, knowing that etcd does not support it, set"
                " upgrade.allowUnsupportedVersionChange=true",
            )
