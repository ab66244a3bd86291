"""Each way users install the packaged chart, into the sandbox's real control plane, with the
pods run by its process kubelet: `helm repo add` + `helm install` from a chart repository served
over HTTP, `helm push` / `helm pull --verify` / `helm install oci://` with a real OCI registry, and
an Argo CD Application synced twice through the Config Management Plugin.

One sandbox for the module (started with a placeholder manifest: the releases are installed by
the tests themselves, the way their users install them), each release under its own name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from argocd import Kubectl, generate, sidecar_path, sync, unpacked_chart
from artifacts import (
    CHART_VERSION,
    SigningKey,
    oci_registry,
    ok,
    run,
    serve_directory,
)
from built_package import BuiltPackage
from etcd_chart.sandbox import helmrun
from etcd_chart.sandbox.client import Sandbox
from etcd_chart.sandbox.state import StateDir
from helmhome import helm_env
from strays import leftovers, subnet_of

# Its module-scoped sandbox is shared: the whole module runs in one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.xdist_group("test_install_paths")]

NAMESPACE = "default"
PLACEHOLDER = """apiVersion: v1
kind: ConfigMap
metadata:
  name: install-paths
data:
  purpose: the releases of tests/packaging/test_install_paths.py are installed by the tests
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("install-paths")
    placeholder = root / "placeholder.yaml"
    placeholder.write_text(PLACEHOLDER)
    sandbox = Sandbox(root / "sandbox")
    try:
        sandbox.up("--manifest", str(placeholder), "--no-post-renderer", timeout=120)
        yield sandbox
    finally:
        subnet = subnet_of(sandbox.state_dir)
        down = sandbox.down(purge=True)
        assert down.returncode == 0, down.stderr
        assert leftovers(sandbox.state_dir, subnet) == []


def kubeconfig(sandbox: Sandbox) -> str:
    return str(StateDir(sandbox.state_dir).kubeconfig)


def kubectl(sandbox: Sandbox) -> Kubectl:
    state = StateDir(sandbox.state_dir)

    def call(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return helmrun.kubectl(state, *args, stdin=stdin)

    return call


def assert_healthy_member(sandbox: Sandbox, pod: str) -> None:
    health = sandbox.etcdctl(pod, "endpoint", "health")
    assert health.returncode == 0, health.stderr
    assert " is healthy: successfully committed proposal" in health.stdout


def test_chart_repository_over_http(
    cluster: Sandbox, signed_chart: Path, signing_key: SigningKey, helm4: str, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(signed_chart, served)
    shutil.copy(f"{signed_chart}.prov", served)
    env = helm_env(tmp_path / "home", 4, KUBECONFIG=kubeconfig(cluster))
    with serve_directory(served) as url:
        ok([helm4, "repo", "index", str(served), "--url", url])
        index = yaml.safe_load((served / "index.yaml").read_text())
        (entry,) = index["entries"]["etcd"]
        assert entry["urls"] == [f"{url}/etcd-{CHART_VERSION}.tgz"]
        assert ok([helm4, "repo", "add", "etcd-charts", url], env) == (
            '"etcd-charts" has been added to your repositories\n'
        )
        found = json.loads(ok([helm4, "search", "repo", "etcd-charts/etcd", "-o", "json"], env))
        assert [(f["name"], f["version"]) for f in found] == [("etcd-charts/etcd", CHART_VERSION)]
        installed = ok([
            helm4, "install", "repo-etcd", "etcd-charts/etcd", "--version", CHART_VERSION,
            "--verify", "--keyring", str(signing_key.public_keyring),
            "--namespace", NAMESPACE, "--set", "replicas=1",
        ], env)  # fmt: skip
    assert "STATUS: deployed" in installed
    cluster.wait_ready(timeout=180)
    assert_healthy_member(cluster, "repo-etcd-0")


def test_oci_registry_push_pull_verify_install(
    cluster: Sandbox,
    signed_chart: Path,
    signing_key: SigningKey,
    registry_binary: str,
    signed_plugin_archive: Path,
    package: BuiltPackage,
    helm3: str,
    helm4: str,
    tmp_path: Path,
) -> None:
    env = helm_env(tmp_path / "home", 4, KUBECONFIG=kubeconfig(cluster))
    (tmp_path / "registry").mkdir()
    with oci_registry(registry_binary, tmp_path / "registry") as address:
        pushed = run([helm4, "push", str(signed_chart), f"oci://{address}/charts", "--plain-http"],
                     env=env)  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        assert f"Pushed: {address}/charts/etcd:{CHART_VERSION}" in pushed.stdout + pushed.stderr
        for major, helm in ((3, helm3), (4, helm4)):
            pulled = tmp_path / f"pulled-by-helm{major}"
            pulled.mkdir()  # Helm 3 does not create it
            ok([
                helm, "pull", f"oci://{address}/charts/etcd", "--version", CHART_VERSION,
                "--plain-http", "--verify", "--keyring", str(signing_key.public_keyring),
                "--destination", str(pulled),
            ], helm_env(tmp_path / "home", major))  # fmt: skip
            pulled_chart = pulled / signed_chart.name
            assert pulled_chart.read_bytes() == signed_chart.read_bytes(), f"helm {major}"
        # The whole released tool chain: the Helm 4 plugin installed from its signed archive,
        # running the etcd-chart that pip installed from the wheel, as the post-renderer.
        keyring = str(signing_key.public_keyring)
        ok([helm4, "plugin", "install", str(signed_plugin_archive), "--keyring", keyring], env)
        env["PATH"] = f"{package.venv / 'bin'}:{env['PATH']}"
        installed = ok([
            helm4, "install", "oci-etcd", f"oci://{address}/charts/etcd", "--version",
            CHART_VERSION, "--plain-http", "--verify", "--keyring", keyring,
            "--namespace", NAMESPACE, "--set", "replicas=3", "--post-renderer", "etcd-chart",
        ], env)  # fmt: skip
    assert "STATUS: deployed" in installed
    cluster.wait_ready(timeout=240)
    for pod in ("oci-etcd-0", "oci-etcd-1", "oci-etcd-2"):
        assert_healthy_member(cluster, pod)
    # The post-renderer wrote the member list the chart alone cannot know (README: what it adds).
    settings = json.loads(
        kubectl(cluster)(
            "-n", NAMESPACE, "get", "configmap", "oci-etcd-config", "-o",
            "jsonpath={.data.etcd\\.conf\\.json}",
        ).stdout
    )  # fmt: skip
    assert settings["initial-cluster"].count("=") == 3, settings


def member_ids(sandbox: Sandbox, pod: str) -> dict[str, str]:
    listed = sandbox.etcdctl(pod, "member", "list", "-w", "json")
    assert listed.returncode == 0, listed.stderr
    members = json.loads(listed.stdout)["members"]
    assert all(not m.get("isLearner") for m in members)
    return {m["name"]: format(m["ID"], "x") for m in members}


def pod_identities(call: Any, release: str) -> dict[str, tuple[str, int]]:
    """Each member pod's UID and restart count: a pod replaced or restarted changes one."""
    members = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=member"
    result = call("-n", NAMESPACE, "get", "pods", "-l", members, "-o", "json")
    assert result.returncode == 0, result.stderr
    return {
        pod["metadata"]["name"]: (
            pod["metadata"]["uid"],
            sum(s.get("restartCount", 0) for s in pod["status"].get("containerStatuses", [])),
        )
        for pod in json.loads(result.stdout)["items"]
    }


def wait_for_cluster_record(call: Any, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = call("-n", NAMESPACE, "get", "configmap", name, "--ignore-not-found", "-o", "name")
        if got.stdout.strip():
            return
        assert time.monotonic() < deadline, f"no ConfigMap {name} after {timeout} s"
        time.sleep(1)


def applied_state(call: Kubectl, manifests: str) -> dict[str, str]:
    """Each non-hook object's generation, or its resourceVersion when it has none: a change to
    what the object asks for changes one (status updates change neither a generation nor the
    resourceVersion of an object without status)."""
    bodies = [b for b in yaml.safe_load_all(manifests) if b]
    names = [
        f"{b['kind'].lower()}/{b['metadata']['name']}"
        for b in bodies
        if "helm.sh/hook" not in (b["metadata"].get("annotations") or {})
    ]
    got = call("-n", NAMESPACE, "get", *names, "-o", "json")
    assert got.returncode == 0, got.stderr
    return {
        f"{item['kind']}/{item['metadata']['name']}": str(
            item["metadata"].get("generation") or item["metadata"]["resourceVersion"]
        )
        for item in json.loads(got.stdout)["items"]
    }


def test_argocd_syncing_twice_changes_nothing(
    cluster: Sandbox, signed_chart: Path, package: BuiltPackage, helm4: str, tmp_path: Path
) -> None:
    """Argo CD runs the pre-upgrade scale-down hook as PreSync on every sync, the first included:
    it must find nothing to do before the cluster exists and nothing to remove after, and a sync
    with nothing changed must leave every object and member as it was."""
    release = "argo-etcd"
    app_dir = unpacked_chart(signed_chart, tmp_path / "checkout")
    generated = generate(
        app_dir, [sidecar_path(tmp_path, helm4, package.command)], release, NAMESPACE,
        [{"name": "set", "array": ["replicas=3"]}],
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    call = kubectl(cluster)

    first = sync(call, NAMESPACE, generated.stdout)
    assert first and all(line.endswith(" created") for line in first), first
    cluster.wait_ready(timeout=240)
    members = member_ids(cluster, f"{release}-0")
    assert sorted(members) == [f"{release}-{i}" for i in range(3)]
    wait_for_cluster_record(call, f"{release}-cluster-record")
    pods = pod_identities(call, release)
    assert sorted(pods) == [f"{release}-{i}" for i in range(3)]
    generation = call("-n", NAMESPACE, "get", "statefulset", release, "-o",
                      "jsonpath={.metadata.generation}").stdout  # fmt: skip

    before = applied_state(call, generated.stdout)
    second = sync(call, NAMESPACE, generated.stdout)
    assert len(second) == len(first)
    assert [line for line in second if line.endswith(" created")] == []
    assert applied_state(call, generated.stdout) == before
    cluster.wait_ready(timeout=240)
    assert member_ids(cluster, f"{release}-0") == members
    assert pod_identities(call, release) == pods
    assert call("-n", NAMESPACE, "get", "statefulset", release, "-o",
                "jsonpath={.metadata.generation}").stdout == generation  # fmt: skip
    jobs = call("-n", NAMESPACE, "get", "jobs", "-o", "name")
    assert f"job.batch/{release}-scale-down" not in jobs.stdout  # hook-succeeded: deleted
