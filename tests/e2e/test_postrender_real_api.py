"""The post-renderer's live checks against a real kube-apiserver: a release installed by real Helm
(Helm 3 with the executable post-renderer), then each later render read against what is live.

No kubelet runs here, so the pods stay Pending: the checks only read the API objects
(StatefulSet, ConfigMaps, the cluster record, Secrets)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_chart.helm import find_tool
from etcd_chart.sandbox.controlplane import ControlPlane
from realapi import kubectl

# Its module-scoped fixtures are shared: the whole module runs in one xdist worker.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.xdist_group("test_postrender_real_api"),
]

NAMESPACE = "live"
POST_RENDERER = Path(__file__).resolve().parents[2] / "plugin" / "bin" / "etcd-post-render"


def render(
    plane: ControlPlane, chart_dir: Path, *args: str, namespace: str = NAMESPACE
) -> subprocess.CompletedProcess[str]:
    """`helm template` of release `etcd` piped through `etcd-chart post-render` with the admin
    kubeconfig, as an upgrade would see it."""
    template = subprocess.run(
        [find_tool("helm3"), "template", "etcd", str(chart_dir), "-n", namespace, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "etcd_chart.cli",
            "post-render",
            f"--kubeconfig={plane.admin_kubeconfig}",
            f"--namespace={namespace}",
        ],
        input=template.stdout,
        capture_output=True,
        text=True,
        check=False,
    )


def config_of(stream: str) -> dict[str, Any]:
    for obj in yaml.safe_load_all(stream):
        if obj and obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "etcd-config":
            parsed: dict[str, Any] = json.loads(obj["data"]["etcd.conf.json"])
            return parsed
    raise AssertionError("no ConfigMap etcd-config in the stream")


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane, chart_dir: Path) -> Iterator[ControlPlane]:
    """Release `etcd` installed by `helm install` with the post-renderer, hooks left out (no
    kubelet runs them here)."""
    kubectl(control_plane, "create", "namespace", NAMESPACE)
    result = subprocess.run(
        [
            find_tool("helm3"),
            "install",
            "etcd",
            str(chart_dir),
            "-n",
            NAMESPACE,
            f"--kubeconfig={control_plane.admin_kubeconfig}",
            "--no-hooks",
            "--post-renderer",
            str(POST_RENDERER),
            "--post-renderer-args",
            f"--kubeconfig={control_plane.admin_kubeconfig}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    yield control_plane


def test_install_on_an_empty_cluster_bootstraps_new(installed: ControlPlane) -> None:
    live = json.loads(
        kubectl(installed, "get", "configmap", "etcd-config", "-n", NAMESPACE, "-o", "json")
    )
    assert json.loads(live["data"]["etcd.conf.json"])["initial-cluster-state"] == "new"
    replicas = kubectl(
        installed, "get", "statefulset", "etcd", "-n", NAMESPACE, "-o", "jsonpath={.spec.replicas}"
    )
    assert replicas == "3"


def test_scale_up_of_a_live_release_joins_existing(
    installed: ControlPlane, chart_dir: Path
) -> None:
    result = render(installed, chart_dir, "--set", "replicas=5")
    assert result.returncode == 0, result.stderr
    assert config_of(result.stdout)["initial-cluster-state"] == "existing"


def test_changed_volume_claim_template_is_refused(installed: ControlPlane, chart_dir: Path) -> None:
    result = render(installed, chart_dir, "--set", "persistence.size=16Gi")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "StatefulSet/etcd" in result.stderr
    assert "volumeClaimTemplates" in result.stderr


def test_scale_down_below_quorum_without_the_hook_is_refused(
    installed: ControlPlane, chart_dir: Path
) -> None:
    result = render(installed, chart_dir, "--set", "replicas=1", "--set", "scaleDown.enabled=false")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "StatefulSet/etcd" in result.stderr
    assert "3 to 1" in result.stderr


def test_user_tls_secrets_are_read_from_the_api_server(
    control_plane: ControlPlane, chart_dir: Path, tmp_path: Path
) -> None:
    namespace = "live-tls"
    kubectl(control_plane, "create", "namespace", namespace)
    out = tmp_path / "pki"
    made = subprocess.run(
        [
            *(sys.executable, "-m", "etcd_chart.cli", "pki", "--out", str(out)),
            *("--format", "secrets", "--namespace", namespace),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    kubectl(control_plane, "apply", "-n", namespace, "-f", str(out / "secrets.yaml"))
    values = str(chart_dir / "ci" / "existing-secrets-values.yaml")

    ok = render(control_plane, chart_dir, "-f", values, namespace=namespace)
    read_notice = (
        f"etcd-chart post-render: read the cluster at {control_plane.server} (context sandbox, "
        f"kubeconfig {control_plane.admin_kubeconfig} (--kubeconfig))"
    )
    assert (ok.returncode, ok.stderr.splitlines()) == (0, [read_notice])
    assert config_of(ok.stdout)["initial-cluster-state"] == "new"

    kubectl(control_plane, "delete", "secret", "etcd-peer-tls", "-n", namespace)
    missing = render(control_plane, chart_dir, "-f", values, namespace=namespace)
    assert missing.returncode == 1
    assert missing.stdout == ""
    problems = [
        line
        for line in missing.stderr.splitlines()
        if not line.startswith("hint:") and line != read_notice
    ]
    assert len(problems) == 1, missing.stderr
    assert problems[0].startswith("etcd/templates/statefulset.yaml: StatefulSet/etcd: ")
    assert f"Secret etcd-peer-tls does not exist in namespace {namespace}" in problems[0]
