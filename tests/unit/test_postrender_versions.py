"""The etcd version changes the post-renderer lets through: the rules (pure), then against the real
API server with a live StatefulSet and pods."""

from __future__ import annotations

from typing import Any

import pytest
from etcd_chart.postrender.cluster import Cluster
from etcd_chart.postrender.versions import (
    ALLOW_ANNOTATION,
    check_change,
    check_running,
    image_version,
    safe_path,
)
from etcd_chart.sandbox.controlplane import ControlPlane
from realapi import apply
from test_postrender_live import SOURCE, chart_objects, find, render, seed

IMAGE = "gcr.io/etcd-development/etcd"


@pytest.mark.parametrize(
    ("image", "version"),
    [
        (f"{IMAGE}:v3.6.16", (3, 6, 16)),
        ("registry.k8s.io/etcd:3.5.16-0", (3, 5, 16)),
        ("docker.io/bitnami/etcd:3.6.16-debian-12-r1", (3, 6, 16)),
        ("localhost:5000/etcd:v3.7.0-rc.0", (3, 7, 0)),
        (f"{IMAGE}:v3.7.3@sha256:{'a' * 64}", (3, 7, 3)),
        (f"{IMAGE}@sha256:{'a' * 64}", None),
        (f"{IMAGE}:latest", None),
        ("localhost:5000/etcd", None),
    ],
)
def test_the_version_an_image_names(image: str, version: tuple[int, int, int] | None) -> None:
    assert image_version(image) == version


@pytest.mark.parametrize(
    ("running", "target"),
    [
        ((3, 7, 3), (3, 7, 3)),
        ((3, 7, 1), (3, 7, 3)),
        ((3, 7, 3), (3, 7, 1)),
        ((3, 6, 11), (3, 7, 3)),
        ((3, 6, 16), (3, 7, 3)),
        ((3, 5, 26), (3, 6, 16)),
        ((3, 5, 30), (3, 6, 0)),
    ],
)
def test_supported_changes_pass(
    running: tuple[int, int, int], target: tuple[int, int, int]
) -> None:
    assert check_change(running, target) is None


def test_skipping_a_minor_is_refused_with_every_step_of_the_safe_path() -> None:
    refusal = check_change((3, 5, 16), (3, 7, 3))
    assert refusal is not None
    assert refusal.message == (
        "changes etcd from 3.5.16 to 3.7.3, skipping 3.6; etcd upgrades one minor version at a"
        " time and a skipped minor is not supported"
    )
    assert refusal.fix == (
        "upgrade in steps, every member Ready before the next step: 3.5.16 -> 3.5.26 or later ->"
        " the newest 3.6 patch release, at least 3.6.11, then one rolling restart on it with"
        " config.snapshotCount=1 -> 3.7.3"
    )
    assert safe_path((3, 5, 30), (3, 7, 3)) == [
        "the newest 3.6 patch release, at least 3.6.11, then one rolling restart on it with"
        " config.snapshotCount=1",
        "3.7.3",
    ]
    assert safe_path((3, 5, 30), (3, 6, 16)) == ["3.6.16"]
    assert safe_path((3, 4, 9), (3, 7, 3)) == [
        "the newest 3.5 patch release, at least 3.5.26",
        "the newest 3.6 patch release, at least 3.6.11, then one rolling restart on it with"
        " config.snapshotCount=1",
        "3.7.3",
    ]


@pytest.mark.parametrize(
    ("running", "target", "minimum", "path"),
    [
        ((3, 5, 16), (3, 6, 16), "3.5.26", "3.5.16 -> 3.5.26 or later -> 3.6.16"),
        ((3, 5, 25), (3, 6, 0), "3.5.26", "3.5.25 -> 3.5.26 or later -> 3.6.0"),
        ((3, 6, 10), (3, 7, 3), "3.6.11", "3.6.10 -> 3.6.11 or later -> 3.7.3"),
    ],
)
def test_an_upgrade_from_below_the_documented_patch_is_refused(
    running: tuple[int, int, int], target: tuple[int, int, int], minimum: str, path: str
) -> None:
    refusal = check_change(running, target)
    assert refusal is not None
    minor = minimum.rsplit(".", 1)[0]
    assert refusal.message.endswith(
        f"; etcd's upgrade guide requires every {minor} member to run {minimum} or later"
        f" before the upgrade to {target[0]}.{target[1]}"
    ), refusal.message
    assert refusal.fix == f"upgrade in steps, every member Ready before the next step: {path}"


def test_a_minor_downgrade_is_refused_and_names_etcds_procedure() -> None:
    refusal = check_change((3, 7, 3), (3, 6, 16))
    assert refusal is not None
    assert refusal.message.startswith(
        "changes etcd from 3.7.3 to 3.6.16, a downgrade of the minor version: members of an older"
        " minor cannot read the data a newer one has written."
    )
    assert "`etcdctl downgrade validate 3.6`, `etcdctl downgrade enable 3.6`" in refusal.message
    assert refusal.fix == (
        "keep image.tag at v3.7.3; to downgrade, run etcd's downgrade procedure first, then"
        " upgrade with upgrade.allowUnsupportedVersionChange=true"
    )


def test_a_half_done_upgrade_may_go_back_but_not_skip_ahead() -> None:
    # Two members on 3.7, one still on 3.6: the cluster version is 3.6, going back is safe.
    assert check_running([(3, 7, 3), (3, 6, 16)], (3, 6, 16)) == []
    # Every member on 3.7: that is a downgrade.
    assert len(check_running([(3, 7, 3)], (3, 6, 16))) == 1
    # Half way from 3.5 to 3.6, straight on to 3.7 skips 3.6 for the 3.5 members.
    (refusal,) = check_running([(3, 6, 16), (3, 5, 30)], (3, 7, 3))
    assert refusal.message.startswith("changes etcd from 3.5.30 to 3.7.3, skipping 3.6")


# --- against the real API server -----------------------------------------------------------


def with_image(bodies: list[dict[str, Any]], tag: str, allow: bool = False) -> list[dict[str, Any]]:
    sts = find(bodies, "StatefulSet", "etcd")
    (container,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "etcd"]
    container["image"] = f"{IMAGE}:{tag}"
    if allow:
        sts["metadata"].setdefault("annotations", {})[ALLOW_ANNOTATION] = "true"
    return bodies


def etcd_container_path(bodies: list[dict[str, Any]]) -> str:
    containers = find(bodies, "StatefulSet", "etcd")["spec"]["template"]["spec"]["containers"]
    position = next(i for i, c in enumerate(containers) if c["name"] == "etcd")
    return f"spec.template.spec.containers[{position}].image"


def test_live_skip_is_refused_and_names_the_running_version(
    control_plane: ControlPlane, ns: str, cluster: Cluster
) -> None:
    seed(control_plane, ns, with_image(chart_objects(ns), "v3.5.16"))
    bodies = with_image(chart_objects(ns), "v3.7.3")
    outcome = render(bodies, cluster)
    assert outcome.output == ""
    (line,) = outcome.report.lines()
    assert line.startswith(
        f"{SOURCE}: StatefulSet/etcd: {etcd_container_path(bodies)}: changes etcd from 3.5.16 to"
        " 3.7.3, skipping 3.6; etcd upgrades one minor version at a time and a skipped minor is"
        " not supported (running: 3.5.16 on the live StatefulSet"
    ), line
    assert line.endswith(
        " (upgrade in steps, every member Ready before the next step: 3.5.16 -> 3.5.26 or later"
        " -> the newest 3.6 patch release, at least 3.6.11, then one rolling restart on it with"
        " config.snapshotCount=1 -> 3.7.3; or, knowing that etcd does"
        " not support it, set upgrade.allowUnsupportedVersionChange=true)"
    ), line


def test_live_pods_on_another_version_count_too(
    control_plane: ControlPlane, ns: str, cluster: Cluster
) -> None:
    """The StatefulSet already says 3.6.16, but a pod still runs 3.5.16 (a rollout paused)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "etcd-2"},
        "spec": {
            "nodeSelector": {"etcd-chart.test/no-such-node": "true"},
            "containers": [{"name": "etcd", "image": f"{IMAGE}:v3.5.16"}],
        },
    }
    apply(control_plane, ns, [pod])
    seed(control_plane, ns, with_image(chart_objects(ns), "v3.6.16"))
    outcome = render(with_image(chart_objects(ns), "v3.7.3"), cluster)
    (line,) = outcome.report.lines()
    assert "changes etcd from 3.5.16 to 3.7.3, skipping 3.6" in line, line
    assert "(running: 3.5.16 on etcd-2)" in line, line


def test_live_supported_upgrade_passes(
    control_plane: ControlPlane, ns: str, cluster: Cluster
) -> None:
    seed(control_plane, ns, with_image(chart_objects(ns), "v3.6.16"))
    outcome = render(with_image(chart_objects(ns), "v3.7.3"), cluster)
    assert outcome.report.lines() == []
    assert outcome.notes == []


def test_live_override_passes_with_a_warning(
    control_plane: ControlPlane, ns: str, cluster: Cluster
) -> None:
    seed(control_plane, ns, with_image(chart_objects(ns), "v3.7.3"))
    outcome = render(with_image(chart_objects(ns), "v3.6.16", allow=True), cluster)
    assert outcome.report.lines() == []
    (note,) = outcome.notes
    assert note.startswith(
        f"WARNING: {ns}/etcd: changes etcd from 3.7.3 to 3.6.16, a downgrade of the minor version"
    ), note
    assert f"passed because of {ALLOW_ANNOTATION} (upgrade.allowUnsupportedVersionChange)" in note


def test_live_version_that_cannot_be_told_passes_with_a_note(
    control_plane: ControlPlane, ns: str, cluster: Cluster
) -> None:
    seed(control_plane, ns, with_image(chart_objects(ns), "v3.6.16"))
    bodies = chart_objects(ns)
    sts = find(bodies, "StatefulSet", "etcd")
    (container,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "etcd"]
    container["image"] = f"{IMAGE}@sha256:{'b' * 64}"
    outcome = render(bodies, cluster)
    assert outcome.report.lines() == []
    assert outcome.notes == [
        f"{ns}/etcd: the version change was not checked: image '{IMAGE}@sha256:{'b' * 64}' names"
        " no etcd version (a digest or `latest`); make sure it is the running minor version or"
        " the next one"
    ]
