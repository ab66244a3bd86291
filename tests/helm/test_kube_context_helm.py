"""Real Helm 3 and 4 with a kubeconfig of two contexts: the post-renderer reads the one named.

Both contexts are on the real API server (the `control_plane` fixture): `alpha`, the current one,
a ServiceAccount granted nothing, and `beta`, the admin, whose namespace holds the record of a
release installed before. `helm install --kube-context beta --dry-run` talks to `beta`; the
post-renderer hears of the context only through `--post-renderer-args`. Without it, the install
stops with the post-renderer's message (on stderr for Helm 3, in the error file for Helm 4, which
hides a plugin's stderr); with it, the post-renderer reads `beta`, where the release already ran,
and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from etcd_chart.sandbox.controlplane import ControlPlane
from helmhome import helm_env
from realapi import put_cluster_record, service_account_token, write_contexts
from test_post_renderer_helm import (
    config,
    helm_major,
    objects,
    renderer_args,
    run,
)


def test_helm_install_reads_the_context_named_through_post_renderer_args(
    helm: str,
    helm_home: Path,
    chart_dir: Path,
    control_plane: ControlPlane,
    namespace: Callable[[], str],
    tmp_path: Path,
) -> None:
    major = helm_major(helm)
    ns = namespace()
    put_cluster_record(control_plane, ns)
    users = {"alpha": service_account_token(control_plane, ns, "alpha"), "beta": None}
    kubeconfig = write_contexts(control_plane, tmp_path / "kubeconfig", ns, users, "alpha")
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
        f"etcd-chart post-render: read the cluster at {control_plane.server} "
        f"(context beta, kubeconfig {kubeconfig} (KUBECONFIG))\n"
    )
