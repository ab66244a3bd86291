"""The post-renderer under real Helm: Helm 3 with the executable, Helm 4 with the plugin.

`helm install --dry-run` needs an API server: the real one of the `control_plane` fixture
(tests/conftest.py). Helm reads discovery and release Secrets from it, and the post-renderer reads
the live StatefulSet and cluster record from it, in the test's own namespace.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_chart.sandbox.controlplane import ControlPlane
from helmhome import helm_env
from realapi import put_cluster_record, write_kubeconfig

# Its module-scoped fixtures are shared: the whole module runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_post_renderer_helm")

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "plugin" / "bin" / "etcd-post-render"
HINT = (
    "hint: run `helm template RELEASE CHART [your flags] | etcd-chart post-render` "
    "to see the same check\n"
)
NOT_ETCD = (
    "stdin: no etcd member set among 1 objects (ConfigMap): this post-renderer is for etcd "
    "releases (use this post-renderer only for etcd releases (the etcd chart, or an etcd "
    "StatefulSet whose container runs etcd with --initial-cluster); run Helm without "
    "--post-renderer otherwise)\n" + HINT
)


def renderer_args(major: int) -> list[str]:
    return ["--post-renderer", str(WRAPPER) if major == 3 else "etcd-chart"]


def helm_major(helm: str) -> int:
    return 4 if helm.endswith("helm4") else 3


def objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def find(bodies: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(b for b in bodies if b["kind"] == kind and b["metadata"]["name"] == name)


def config(bodies: list[dict[str, Any]], name: str = "etcd-config") -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(find(bodies, "ConfigMap", name)["data"]["etcd.conf.json"])
    return loaded


def peer_list(replicas: int, domain: str = "cluster.local", namespace: str = "default") -> str:
    return ",".join(
        f"etcd-{i}=http://etcd-{i}.etcd-headless.{namespace}.svc.{domain}:2380"
        for i in range(replicas)
    )


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)


@pytest.mark.parametrize("replicas", [3, 5])
def test_template_through_the_post_renderer(
    helm: str, helm_home: Path, chart_dir: Path, replicas: int
) -> None:
    major = helm_major(helm)
    env = helm_env(helm_home, major)
    command = [helm, "template", "etcd", str(chart_dir), "--set", f"replicas={replicas}"]
    plain = run(command, env)
    rendered = run([*command, *renderer_args(major)], env)
    assert (plain.returncode, rendered.returncode) == (0, 0), rendered.stderr
    bodies = objects(rendered.stdout)
    assert config(bodies)["initial-cluster"] == peer_list(replicas)
    assert config(bodies)["initial-cluster-state"] == "new"
    assert [(b["kind"], b["metadata"]["name"]) for b in bodies] == [
        (b["kind"], b["metadata"]["name"]) for b in objects(plain.stdout)
    ]
    if major == 3:  # offline and nothing to change: the very same bytes
        assert rendered.stdout == plain.stdout


def test_helm4_hooks_come_out_as_hooks(helm4: str, helm_home: Path, chart_dir: Path) -> None:
    env = helm_env(helm_home, 4)
    command = [helm4, "template", "etcd", str(chart_dir), "--set", "replicas=5"]
    plain = objects(run(command, env).stdout)
    rendered = objects(run([*command, "--post-renderer", "etcd-chart"], env).stdout)

    def hooks(bodies: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, str]]]:
        return [
            (b["kind"], b["metadata"]["name"], b["metadata"]["annotations"])
            for b in bodies
            if "helm.sh/hook" in (b["metadata"].get("annotations") or {})
        ]

    assert hooks(plain)  # the chart has its scale-down hook
    assert hooks(rendered) == hooks(plain)
    job = find(rendered, "Job", "etcd-scale-down")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade,pre-rollback"


def test_cluster_domain_and_state_reach_helm_output(
    helm: str, helm_home: Path, chart_dir: Path
) -> None:
    major = helm_major(helm)
    env = helm_env(helm_home, major, ETCD_CHART_INITIAL_CLUSTER_STATE="existing")
    command = [helm, "template", "etcd", str(chart_dir), "--set", "clusterDomain=corp.example"]
    result = run([*command, *renderer_args(major)], env)
    assert result.returncode == 0, result.stderr
    bodies = objects(result.stdout)
    assert config(bodies)["initial-cluster"] == peer_list(3, "corp.example")
    assert config(bodies)["initial-cluster-state"] == "existing"


def test_install_dry_run_against_a_cluster(
    helm: str,
    helm_home: Path,
    chart_dir: Path,
    control_plane: ControlPlane,
    namespace: Callable[[], str],
    tmp_path: Path,
) -> None:
    major = helm_major(helm)
    ns = namespace()
    kubeconfig = write_kubeconfig(control_plane, tmp_path / "kubeconfig", ns)
    env = helm_env(helm_home, major, KUBECONFIG=str(kubeconfig))
    command = [
        helm,
        "install",
        "etcd",
        str(chart_dir),
        "--dry-run",
        "--disable-openapi-validation",
        "--set",
        "replicas=5",
        *renderer_args(major),
    ]
    fresh = run(command, env)
    assert fresh.returncode == 0, fresh.stderr
    assert "STATUS: pending-install" in fresh.stdout
    manifest = fresh.stdout.split("MANIFEST:\n", 1)[1].split("\nNOTES:", 1)[0]
    assert config(objects(manifest))["initial-cluster-state"] == "new"
    # Installed before and uninstalled: the cluster record (not Helm's) and the volumes stay,
    # so installing again must not bootstrap a new cluster over them.
    put_cluster_record(control_plane, ns)
    again = run(command, env)
    assert again.returncode == 0, again.stderr
    manifest = again.stdout.split("MANIFEST:\n", 1)[1].split("\nNOTES:", 1)[0]
    assert config(objects(manifest))["initial-cluster"] == peer_list(5, namespace=ns)
    assert config(objects(manifest))["initial-cluster-state"] == "existing"


@pytest.fixture(scope="module")
def web_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chart = tmp_path_factory.mktemp("web-chart")
    (chart / "templates").mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: web\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: b\n"
    )
    return chart


def test_bad_input_fails_helm3_with_the_message(
    helm3: str, helm_home: Path, web_chart: Path
) -> None:
    result = run(
        [helm3, "template", "web", str(web_chart), "--post-renderer", str(WRAPPER)],
        helm_env(helm_home, 3),
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert NOT_ETCD in result.stderr


def test_bad_input_fails_helm4_and_the_message_reaches_the_error_file(
    helm4: str, helm_home: Path, web_chart: Path, tmp_path: Path
) -> None:
    error_file = tmp_path / "errors.txt"
    env = helm_env(helm_home, 4, ETCD_CHART_ERROR_FILE=str(error_file))
    result = run([helm4, "template", "web", str(web_chart), "--post-renderer", "etcd-chart"], env)
    assert (result.returncode, result.stdout) == (1, "")
    assert 'plugin "etcd-chart" exited with error' in result.stderr
    assert NOT_ETCD not in result.stderr  # Helm 4 drops the plugin's stderr ...
    assert error_file.read_text() == NOT_ETCD  # ... so the file carries it


def test_bad_input_under_helm4_reaches_the_terminal(
    helm4: str, helm_home: Path, web_chart: Path, tmp_path: Path
) -> None:
    import fcntl
    import termios

    helm_stderr = tmp_path / "helm-stderr.txt"
    master, slave = pty.openpty()

    def child() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.dup2(os.open(helm_stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)

    env = helm_env(helm_home, 4)
    del env["ETCD_CHART_NO_TTY"]
    process = subprocess.Popen(
        [helm4, "template", "web", str(web_chart), "--post-renderer", "etcd-chart"],
        preexec_fn=child,  # noqa: PLW1509
        pass_fds=(slave,),
        env=env,
    )
    data = b""
    try:
        os.close(slave)
        deadline = time.monotonic() + 60
        while b"to see the same check" not in data and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
        assert process.wait(timeout=60) == 1
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(master)
    assert data.decode().replace("\r\n", "\n") == NOT_ETCD
    assert 'plugin "etcd-chart" exited with error' in helm_stderr.read_text()


def test_helm3_must_not_see_the_helm4_plugin(helm3: str, helm_home: Path) -> None:
    """Why each Helm gets its own HELM_PLUGINS: Helm 3 cannot read a postrenderer/v1 plugin."""
    shared = helm_env(helm_home, 3, HELM_PLUGINS=str(helm_home / "helm4" / "data" / "plugins"))
    result = run([helm3, "plugin", "list"], shared)
    assert result.returncode == 1
    assert 'json: unknown field "apiVersion"' in result.stderr
    own = run([helm3, "plugin", "list"], helm_env(helm_home, 3))
    assert (own.returncode, own.stderr) == (0, "")


SCENARIOS = sorted((REPO / "chart" / "ci").glob("*-values.yaml"))


@pytest.mark.parametrize("values", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_every_scenario_passes_and_agrees_with_the_chart(
    helm3: str, helm_home: Path, chart_dir: Path, values: Path
) -> None:
    """The chart renders its own peer list; the post-renderer, computing it independently from
    the StatefulSet, must arrive at the same one (and so leave the stream as it was)."""
    env = helm_env(helm_home, 3)
    command = [helm3, "template", "etcd", str(chart_dir), "-f", str(values)]
    plain = run(command, env)
    rendered = run([*command, "--post-renderer", str(WRAPPER)], env)
    assert (rendered.returncode, rendered.stderr) == (0, ""), rendered.stderr
    assert rendered.stdout == plain.stdout
    bodies = objects(rendered.stdout)
    sts = next(b for b in bodies if b["kind"] == "StatefulSet")
    reference = sts["metadata"]["annotations"]["etcd-chart/config"]
    configmap_name, key = reference.split("/")
    chart_config = json.loads(find(bodies, "ConfigMap", configmap_name)["data"][key])
    members = [entry.split("=")[0] for entry in chart_config["initial-cluster"].split(",")]
    assert members == [f"{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
