"""Which cluster the post-renderer reads: never a different one than Helm installs into, silently.

Two fake API servers stand for two clusters in one kubeconfig (contexts `alpha` and `beta`).
Only `beta` runs the release already, so `initial-cluster-state` tells which cluster was read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_chart.fakeapi import FakeApiServer

DATA = Path(__file__).resolve().parents[1] / "data" / "postrender"
CHART_LIKE = (DATA / "chart-like.yaml").read_text()
PREFIX = "etcd-chart post-render: "
OFFLINE = "to render without the cluster, pass --offline or set ETCD_CHART_OFFLINE=1"


def post_render(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etcd_chart.cli", "post-render", "--namespace", "db", *args],
        input=CHART_LIKE,
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
def servers(tmp_path: Path) -> Iterator[dict[str, FakeApiServer]]:
    started = {
        name: FakeApiServer(token=f"{name}-token", ca_dir=tmp_path / name).start()
        for name in ("alpha", "beta")
    }
    live = next(d for d in yaml.safe_load_all(CHART_LIKE) if d and d["kind"] == "StatefulSet")
    started["beta"].put_object(live)
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


def _merged(servers: dict[str, FakeApiServer], current: str = "alpha") -> dict[str, Any]:
    config: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "current-context": current}
    for part in ("clusters", "users", "contexts"):
        config[part] = []
    for name, server in servers.items():
        single = server.kubeconfig("db")
        config["clusters"].append({**single["clusters"][0], "name": name})
        config["users"].append({**single["users"][0], "name": name})
        context = {"cluster": name, "user": name, "namespace": "db"}
        config["contexts"].append({"name": name, "context": context})
    return config


@pytest.fixture
def two_contexts(servers: dict[str, FakeApiServer], tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(_merged(servers)))
    return path


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
    two_contexts: Path, servers: dict[str, FakeApiServer], tmp_path: Path
) -> None:
    error_file = tmp_path / "messages"
    beta = post_render(
        "--kube-context=beta", KUBECONFIG=str(two_contexts), ETCD_CHART_ERROR_FILE=str(error_file)
    )
    notice = (
        f"{PREFIX}read the cluster at {servers['beta'].url} "
        f"(context beta, kubeconfig {two_contexts} (KUBECONFIG))\n"
    )
    assert (beta.returncode, beta.stderr) == (0, notice)
    assert state_of(beta.stdout) == "existing"
    assert error_file.read_text() == notice  # the way Helm 4 users see it
    alpha = post_render("--kube-context", "alpha", KUBECONFIG=str(two_contexts))
    assert alpha.returncode == 0, alpha.stderr
    assert alpha.stderr == notice.replace("beta", "alpha").replace(
        servers["beta"].url, servers["alpha"].url
    )
    assert state_of(alpha.stdout) == "new"


def test_an_unknown_context_is_refused(two_contexts: Path) -> None:
    result = post_render("--kube-context", "prod", KUBECONFIG=str(two_contexts))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"{PREFIX}the kubeconfig {two_contexts} (KUBECONFIG) has no context 'prod' (its "
        "contexts: alpha, beta) (name one of its contexts with --kube-context, the one Helm "
        "installs into)\n"
    )


def test_one_context_is_read_without_naming_it_and_said(
    servers: dict[str, FakeApiServer], tmp_path: Path
) -> None:
    kubeconfig = servers["beta"].write_kubeconfig(tmp_path / "single", "db")
    result = post_render(KUBECONFIG=str(kubeconfig))
    assert (result.returncode, result.stderr) == (
        0,
        f"{PREFIX}read the cluster at {servers['beta'].url} "
        f"(context fakeapi, kubeconfig {kubeconfig} (KUBECONFIG))\n",
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
