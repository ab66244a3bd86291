"""The pure parts of the sandbox's real-control-plane components: the PersistentVolume the local
provisioner makes, the pod status the kubelet reports, volume refresh, and the helm command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from etcd_chart.helm import find_tool
from etcd_chart.sandbox import podstatus
from etcd_chart.sandbox.helmrun import POST_RENDER_EXECUTABLE, helm_command
from etcd_chart.sandbox.podspec import ApiInfo, PodContext, materialize_volumes, refresh_volumes
from etcd_chart.sandbox.provisioner import PROVISIONER, SELECTED_NODE, storage_class, volume_for
from etcd_chart.sandbox.render import RenderArgs, RenderError
from etcd_chart.sandbox.state import StateDir

CLAIM = {
    "metadata": {
        "name": "data-etcd-0",
        "namespace": "etcd",
        "uid": "1234",
        "annotations": {SELECTED_NODE: "sandbox-node-b"},
    },
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Gi"}}},
}


def test_the_volume_is_pinned_to_the_selected_node_and_bound_to_the_claim() -> None:
    volume = volume_for(CLAIM, Path("/state/volumes/pvc-1234"))
    assert volume["metadata"] == {
        "name": "pvc-1234",
        "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
    }
    spec = volume["spec"]
    assert spec["capacity"] == {"storage": "8Gi"}
    assert spec["local"] == {"path": "/state/volumes/pvc-1234"}
    assert spec["claimRef"]["uid"] == "1234"
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    term = spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term == {"key": "kubernetes.io/hostname", "operator": "In", "values": ["sandbox-node-b"]}


def test_the_storage_class_is_the_default_and_waits_for_the_first_consumer() -> None:
    sc = storage_class()
    assert sc["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert (sc["volumeBindingMode"], sc["provisioner"]) == ("WaitForFirstConsumer", PROVISIONER)


def status(ready: str) -> dict[str, Any]:
    return {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": ready}],
        "containerStatuses": [
            {
                "name": "etcd",
                "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-01-01T00:00:01Z"}},
            }
        ],
        "initContainerStatuses": [],
    }


def test_a_condition_keeps_its_transition_time_until_it_changes() -> None:
    first = podstatus.with_transition_times(status("False"), {}, "T0")
    stamp = first["conditions"][0]["lastTransitionTime"]
    same = podstatus.with_transition_times(status("False"), first, "T0")
    assert same["conditions"][0]["lastTransitionTime"] == stamp
    assert same["startTime"] == "T0"
    changed = podstatus.with_transition_times(status("True"), first, "T0")
    assert changed["conditions"][0]["status"] == "True"


def test_finish_times_alone_are_no_change() -> None:
    later = status("True")
    later["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = "2026-01-01T00:00:09Z"
    assert podstatus.comparable(status("True")) == podstatus.comparable(later)
    assert podstatus.comparable(status("True")) != podstatus.comparable(status("False"))


def test_refresh_rewrites_changed_files_by_rename(tmp_path: Path) -> None:
    objects = {("ConfigMap", "ns", "conf"): {"kind": "ConfigMap", "data": {"a": "one", "b": "x"}}}
    ctx = PodContext(
        name="p",
        namespace="ns",
        uid="u",
        address="127.0.0.9",
        labels={},
        annotations={},
        spec={"volumes": [{"name": "c", "configMap": {"name": "conf"}}]},
        lookup=lambda kind, ns, name: objects.get((kind, ns, name)),
        api=ApiInfo(host="127.0.0.1", port=6443, token="t", ca_pem=""),
    )
    materialize_volumes(ctx, tmp_path, lambda claim: tmp_path / claim, None)
    mounted = tmp_path / "subpath-mount"
    os.link(tmp_path / "volumes" / "c" / "a", mounted)  # a subPath bind keeps the old inode
    assert refresh_volumes(ctx, tmp_path, None) == []
    objects[("ConfigMap", "ns", "conf")]["data"]["a"] = "two"
    assert refresh_volumes(ctx, tmp_path, None) == [str(tmp_path / "volumes" / "c" / "a")]
    assert (tmp_path / "volumes" / "c" / "a").read_text() == "two"
    assert mounted.read_text() == "one"


def test_helm_3_gets_the_executable_post_renderer(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    args = RenderArgs(chart="chart", release="etcd", namespace="ns", helm=find_tool("helm3"))
    command = helm_command(state, "upgrade", args, 120)
    assert command[1:4] == ["upgrade", "etcd", "chart"]
    at = command.index("--post-renderer")
    assert command[at + 1 : at + 4] == [
        str(POST_RENDER_EXECUTABLE),
        "--post-renderer-args",
        f"--kubeconfig={state.kubeconfig}",
    ]
    plain = helm_command(state, "upgrade", args, 120, post_render=False)
    assert "--post-renderer" not in plain


def test_the_real_control_plane_needs_a_chart(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="give a chart directory"):
        helm_command(StateDir(tmp_path), "install", RenderArgs(manifest="x.yaml"), 60)
