"""Real Helm 3 and 4 with a kubeconfig of two contexts: the post-renderer reads the one named.

`helm install --kube-context beta --dry-run` talks to cluster `beta`; the post-renderer hears of
the context only through `--post-renderer-args`. Without it, the install stops with the
post-renderer's message (on stderr for Helm 3, in the error file for Helm 4, which hides a
plugin's stderr); with it, the post-renderer reads `beta`, where the release already runs, and
says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_chart.fakeapi import FakeApiServer
from helmhome import helm_env
from test_post_renderer_helm import (
    config,
    helm_major,
    objects,
    renderer_args,
    run,
)


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[dict[str, FakeApiServer]]:
    started = {
        name: FakeApiServer(token=f"{name}-token", ca_dir=tmp_path / name).start()
        for name in ("alpha", "beta")
    }
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


def two_context_kubeconfig(clusters: dict[str, FakeApiServer], path: Path) -> Path:
    merged: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "alpha",
        "clusters": [],
        "users": [],
        "contexts": [],
    }
    for name, server in clusters.items():
        single = server.kubeconfig("default")
        merged["clusters"].append({**single["clusters"][0], "name": name})
        merged["users"].append({**single["users"][0], "name": name})
        merged["contexts"].append(
            {"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}
        )
    path.write_text(yaml.safe_dump(merged))
    return path


def test_helm_install_reads_the_context_named_through_post_renderer_args(
    helm: str,
    helm_home: Path,
    chart_dir: Path,
    clusters: dict[str, FakeApiServer],
    tmp_path: Path,
) -> None:
    major = helm_major(helm)
    clusters["beta"].put_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "etcd-cluster-record", "namespace": "default"},
            "data": {"created": "2026-01-01T00:00:00Z"},
        }
    )
    kubeconfig = two_context_kubeconfig(clusters, tmp_path / "kubeconfig")
    error_file = tmp_path / "messages"
    env = helm_env(
        helm_home, major, KUBECONFIG=str(kubeconfig), ETCD_CHART_ERROR_FILE=str(error_file)
    )
    command = [
        helm,
        "install",
        "etcd",
        str(chart_dir),
        "--kube-context",
        "beta",
        "--dry-run",
        "--disable-openapi-validation",
        *renderer_args(major),
    ]
    refused = run(command, env)
    assert (refused.returncode, refused.stdout) == (1, "")
    message = error_file.read_text()
    assert message.startswith(
        f"etcd-chart post-render: the kubeconfig {kubeconfig} (KUBECONFIG) has 2 contexts "
        "(alpha, beta) and none was named"
    )
    assert "add `--post-renderer-args --kube-context=CONTEXT` to the helm command" in message
    if major == 3:
        assert message in refused.stderr
    named = run([*command, "--post-renderer-args", "--kube-context=beta"], env)
    assert named.returncode == 0, named.stderr
    manifest = named.stdout.split("MANIFEST:\n", 1)[1].split("\nNOTES:", 1)[0]
    assert config(objects(manifest))["initial-cluster-state"] == "existing"
    assert error_file.read_text() == (
        f"etcd-chart post-render: read the cluster at {clusters['beta'].url} "
        f"(context beta, kubeconfig {kubeconfig} (KUBECONFIG))\n"
    )
