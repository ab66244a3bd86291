"""Which cluster the post-renderer reads: never a different one than Helm installs into, silently.

One kubeconfig of two contexts on the real API server (the `control_plane` fixture): `alpha`, the
current one, a ServiceAccount granted nothing, and `beta`, the admin. The release already runs in
the test's namespace, so `beta` reads `initial-cluster-state: existing` and `alpha` is refused by
name: each answer tells which context was read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from etcd_chart.sandbox.controlplane import ControlPlane
from realapi import apply, service_account_token, write_contexts, write_kubeconfig

DATA = Path(__file__).resolve().parents[1] / "data" / "postrender"
CHART_LIKE = (DATA / "chart-like.yaml").read_text()
PREFIX = "etcd-chart post-render: "
OFFLINE = "to render without the cluster, pass --offline or set ETCD_CHART_OFFLINE=1"


def in_namespace(text: str, namespace: str) -> str:
    """The chart-like stream with its namespace `db` (metadata, DNS names, token) renamed."""
    return re.sub(r"\bdb\b", namespace, text)


def post_render(*args: str, namespace: str = "db", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etcd_chart.cli", "post-render", "--namespace", namespace, *args],
        input=in_namespace(CHART_LIKE, namespace),
        capture_output=True,
        text=True,
        env={**os.environ, "ETCD_CHART_NO_TTY": "1", **env},
        timeout=60,
    )


def state_of(output: str) -> str:
    configmap = next(d for d in yaml.safe_load_all(output) if d and d["kind"] == "ConfigMap")
    state: str = json.loads(configmap["data"]["etcd.conf.json"])["initial-cluster-state"]
    return state


@pytest.fixture
def db(control_plane: ControlPlane, namespace: Callable[[], str]) -> str:
    """The test's namespace, where the release's StatefulSet already runs."""
    name = namespace()
    stream = yaml.safe_load_all(in_namespace(CHART_LIKE, name))
    live = next(d for d in stream if d and d["kind"] == "StatefulSet")
    apply(control_plane, name, [live])
    return name


@pytest.fixture
def two_contexts(control_plane: ControlPlane, db: str, tmp_path: Path) -> Path:
    alpha = service_account_token(control_plane, db, "alpha")
    users = {"alpha": alpha, "beta": None}
    return write_contexts(control_plane, tmp_path / "kubeconfig", db, users, current="alpha")


def test_two_contexts_and_none_named_is_refused(two_contexts: Path) -> None:
    expected = (
        f"{PREFIX}the kubeconfig {two_contexts} (KUBECONFIG) has 2 contexts (alpha, beta) and "
        "none was named; Helm does not tell a post-renderer which cluster it installs into, so "
        "the post-renderer will not guess (add `--post-renderer-args --kube-context=CONTEXT` to "
        "the helm command, with the context Helm uses (its --kube-context, else the current "
        "context: alpha); or `--post-renderer-args --offline` to render without reading a "
        "cluster)\n"
    )
    result = post_render(KUBECONFIG=str(two_contexts))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", expected)
    explicit = post_render("--kubeconfig", str(two_contexts), KUBECONFIG=os.devnull)
    assert (explicit.returncode, explicit.stdout) == (2, "")
    assert explicit.stderr == expected.replace("(KUBECONFIG)", "(--kubeconfig)")


def test_the_named_context_is_read_and_said(
    two_contexts: Path, control_plane: ControlPlane, db: str, tmp_path: Path
) -> None:
    error_file = tmp_path / "messages"
    beta = post_render(
        "--kube-context=beta",
        namespace=db,
        KUBECONFIG=str(two_contexts),
        ETCD_CHART_ERROR_FILE=str(error_file),
    )
    notice = (
        f"{PREFIX}read the cluster at {control_plane.server} "
        f"(context beta, kubeconfig {two_contexts} (KUBECONFIG))\n"
    )
    assert (beta.returncode, beta.stderr) == (0, notice)
    assert state_of(beta.stdout) == "existing"
    assert error_file.read_text() == notice  # the way Helm 4 users see it
    alpha = post_render("--kube-context", "alpha", namespace=db, KUBECONFIG=str(two_contexts))
    assert (alpha.returncode, alpha.stdout, alpha.stderr) == (
        2,
        "",
        f"{PREFIX}reading StatefulSet {db}/etcd from {control_plane.server} failed: HTTP 403 "
        f'statefulsets.apps "etcd" is forbidden: User "system:serviceaccount:{db}:alpha" '
        f'cannot get resource "statefulsets" in API group "apps" in the namespace "{db}" '
        "(check the kubeconfig and that the cluster is up; to render without it, pass "
        "--offline or set ETCD_CHART_OFFLINE=1)\n",
    )


def test_an_unknown_context_is_refused(two_contexts: Path) -> None:
    result = post_render("--kube-context", "prod", KUBECONFIG=str(two_contexts))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"{PREFIX}the kubeconfig {two_contexts} (KUBECONFIG) has no context 'prod' (its "
        "contexts: alpha, beta) (name one of its contexts with --kube-context, the one Helm "
        "installs into)\n"
    )


def test_one_context_is_read_without_naming_it_and_said(
    control_plane: ControlPlane, db: str, tmp_path: Path
) -> None:
    kubeconfig = write_kubeconfig(control_plane, tmp_path / "single", db, context="beta")
    result = post_render(namespace=db, KUBECONFIG=str(kubeconfig))
    assert (result.returncode, result.stderr) == (
        0,
        f"{PREFIX}read the cluster at {control_plane.server} "
        f"(context beta, kubeconfig {kubeconfig} (KUBECONFIG))\n",
    )
    assert state_of(result.stdout) == "existing"


@pytest.mark.parametrize("how", ["KUBECONFIG", "--kubeconfig"])
def test_a_missing_kubeconfig_is_the_same_error_however_named(how: str, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    if how == "KUBECONFIG":
        result = post_render(KUBECONFIG=str(missing))
    else:
        result = post_render("--kubeconfig", str(missing), KUBECONFIG=os.devnull)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"{PREFIX}the kubeconfig {missing} (named by {how}) does not exist (point {how} at the "
        f"kubeconfig Helm uses; {OFFLINE})\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "clusters: [\n",
            "is not valid YAML: while parsing a flow node expected the node content, but found "
            "'<stream end>' at line 2, column 1",
        ),
        (
            "- a\n- b\n",
            "is not a kubeconfig (a mapping with clusters, users and a list of contexts)",
        ),
    ],
)
def test_a_malformed_kubeconfig_is_one_line(tmp_path: Path, content: str, message: str) -> None:
    broken = tmp_path / "broken"
    broken.write_text(content)
    result = post_render(KUBECONFIG=str(broken))
    assert (result.returncode, result.stdout) == (2, "")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"{PREFIX}the kubeconfig {broken} {message}")


def test_a_context_without_its_cluster_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "dangling"
    broken.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "contexts": [{"name": "x", "context": {"cluster": "gone", "user": "gone"}}],
                "current-context": "x",
            }
        )
    )
    result = post_render(KUBECONFIG=str(broken))
    assert (result.returncode, result.stdout) == (2, "")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(
        f"{PREFIX}cannot load the Kubernetes configuration (context x, kubeconfig {broken} "
        "(KUBECONFIG)): "
    )


def test_an_empty_kubeconfig_renders_offline() -> None:
    result = post_render(KUBECONFIG=os.devnull)
    assert (result.returncode, result.stderr) == (0, "")
    assert state_of(result.stdout) == "new"
