"""`etcd-chart post-render` as a process: exact exit codes, stdout and stderr."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from etcd_chart import yamlio
from etcd_chart.sandbox.controlplane import ControlPlane
from realapi import apply, unused_server, write_contexts, write_kubeconfig

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "postrender"
WRAPPER = REPO / "plugin" / "bin" / "etcd-post-render"
HINT = (
    "hint: run `helm template RELEASE CHART [your flags] | etcd-chart post-render` "
    "to see the same check\n"
)
CHART_LIKE = (DATA / "chart-like.yaml").read_text()


def post_render(
    stdin: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "etcd_chart.cli", "post-render", *args]
    environment = {**os.environ, "ETCD_CHART_NO_TTY": "1", **(env or {})}
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, env=environment, cwd=cwd, timeout=60
    )


def with_replicas(text: str, replicas: int) -> str:
    return text.replace("  replicas: 3\n", f"  replicas: {replicas}\n", 1)


def test_success_writes_the_filled_stream_and_nothing_else() -> None:
    result = post_render(with_replicas(CHART_LIKE, 5))
    assert (result.returncode, result.stderr) == (0, "")
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    configmap = next(d for d in documents if d["kind"] == "ConfigMap")
    config = json.loads(configmap["data"]["etcd.conf.json"])
    assert config["initial-cluster"] == ",".join(
        f"etcd-{i}=http://etcd-{i}.etcd-headless.db.svc.example.org:2380" for i in range(5)
    )
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("PodDisruptionBudget", "etcd"),
        ("ConfigMap", "etcd-config"),
        ("Service", "etcd-headless"),
        ("Service", "etcd"),
        ("StatefulSet", "etcd"),
    ]
    assert "# Source: etcd/templates/configmap.yaml\n" in result.stdout


def test_two_runs_are_byte_identical() -> None:
    first = post_render(with_replicas(CHART_LIKE, 7))
    second = post_render(with_replicas(CHART_LIKE, 7))
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout


@pytest.mark.parametrize("replicas", [3, 5])
def test_kubernetes_docs_statefulset(replicas: int) -> None:
    text = with_replicas((DATA / "k8s-docs-etcd.yaml").read_text(), replicas)
    result = post_render(text)
    assert (result.returncode, result.stderr) == (0, "")
    sts = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "StatefulSet"][0]
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    peer_list = [a for a in args if a.startswith("--initial-cluster=")]
    assert peer_list == [
        "--initial-cluster="
        + ",".join(
            f"etcd-{i}=$(URI_SCHEME)://etcd-{i}.$(SERVICE_NAME):2380" for i in range(replicas)
        )
    ]


def test_malformed_yaml() -> None:
    text = CHART_LIKE + "---\n# Source: etcd/templates/broken.yaml\nkind: Service\n  name: x\n"
    result = post_render(text)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "etcd/templates/broken.yaml: not valid YAML at line 147 of the stream: mapping values are "
        "not allowed in this context (fix the template that renders it; `helm template` shows "
        "the text)\n"
    )


def test_non_etcd_stream() -> None:
    text = (
        "---\n# Source: web/templates/cm.yaml\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n"
    )
    result = post_render(text)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "stdin: no etcd member set among 1 objects (ConfigMap): this post-renderer is for etcd "
        "releases (use this post-renderer only for etcd releases (the etcd chart, or an etcd "
        "StatefulSet whose container runs etcd with --initial-cluster); run Helm without "
        "--post-renderer otherwise)\n"
    )


def test_empty_stream() -> None:
    result = post_render("")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "stdin: the input stream is empty: there are no manifests to post-render (pipe a "
        "rendered release into it, e.g. `helm template etcd ./chart | etcd-chart post-render`; "
        "Helm passes no manifests when every template renders empty)\n"
    )


def test_duplicate_objects() -> None:
    service = CHART_LIKE.split("---\n")[4]
    text = CHART_LIKE + "---\n" + service.replace("templates/svc.yaml", "templates/svc-copy.yaml")
    result = post_render(text)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "etcd/templates/svc-copy.yaml: Service/etcd: metadata.name: duplicate: Service db/etcd is "
        "also rendered by etcd/templates/svc.yaml (give one of them another name, or render it "
        "once)\n"
    )


def test_even_member_count() -> None:
    result = post_render(with_replicas(CHART_LIKE, 4))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "etcd/templates/statefulset.yaml: StatefulSet/etcd: spec.replicas: 4 members: an even "
        "count tolerates 1 failed member(s), no more than 3 members do, and needs a larger "
        "quorum (3) (use an odd number such as 3 or 5, or annotate the StatefulSet "
        'etcd-chart/allow-even-replicas: "true")\n'
    )


def test_service_name_without_headless_service() -> None:
    parts = CHART_LIKE.split("---\n")
    text = "---\n".join(p for p in parts if "svc-headless.yaml" not in p)
    result = post_render(text)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "etcd/templates/statefulset.yaml: StatefulSet/etcd: spec.serviceName: Service "
        "etcd-headless is not in the stream, so the members' DNS names (etcd-0.etcd-headless...) "
        "will not resolve (render a headless Service named etcd-headless (clusterIP: None, "
        "publishNotReadyAddresses: true) that selects the member pods)\n"
    )


def test_every_problem_in_one_run_and_error_file(tmp_path: Path) -> None:
    parts = CHART_LIKE.split("---\n")
    text = with_replicas("---\n".join(p for p in parts if "svc-headless.yaml" not in p), 2)
    error_file = tmp_path / "errors.txt"
    result = post_render(text, env={"ETCD_CHART_ERROR_FILE": str(error_file)})
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert len(lines) == 3  # even count, PDB, missing headless Service
    assert lines[0].startswith("etcd/templates/statefulset.yaml: StatefulSet/etcd: spec.replicas")
    assert lines[1].startswith("etcd/templates/pdb.yaml: PodDisruptionBudget/etcd: ")
    assert lines[2].startswith(
        "etcd/templates/statefulset.yaml: StatefulSet/etcd: spec.serviceName"
    )
    assert error_file.read_text() == result.stderr


def test_cluster_state_options_and_env() -> None:
    result = post_render(CHART_LIKE, "--initial-cluster-state", "existing")
    assert '"initial-cluster-state": "existing"' in result.stdout
    result = post_render(CHART_LIKE, env={"ETCD_CHART_INITIAL_CLUSTER_STATE": "bogus"})
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "etcd-chart post-render: ETCD_CHART_INITIAL_CLUSTER_STATE is 'bogus' "
        "(use new or existing)\n"
    )


def test_cluster_domain_option_for_built_urls() -> None:
    docs = yaml.safe_load_all((DATA / "k8s-docs-etcd.yaml").read_text())
    bodies = [d for d in docs if d]
    container = bodies[1]["spec"]["template"]["spec"]["containers"][0]
    container["args"] = [
        a for a in container["args"] if not a.startswith("--initial-advertise-peer-urls")
    ]
    container["args"].append("--initial-advertise-peer-urls=http://$(HOSTNAME):2380")
    container["args"][0] = "--name=$(HOSTNAME)"
    text = "".join(f"---\n{yamlio.dump(b)}" for b in bodies)
    result = post_render(text, env={"ETCD_CHART_CLUSTER_DOMAIN": "corp.example"})
    assert result.returncode == 0, result.stderr
    assert "etcd-2=http://etcd-2:2380" in result.stdout  # the manifest's own form wins
    container["args"] = [
        a for a in container["args"] if not a.startswith("--initial-advertise-peer-urls")
    ]
    text = "".join(f"---\n{yamlio.dump(b)}" for b in bodies)
    result = post_render(text, "--cluster-domain", "corp.example")
    assert result.returncode == 0, result.stderr
    assert "etcd-2=http://etcd-2.etcd.default.svc.corp.example:2380" in result.stdout


def test_live_cluster_through_kubeconfig(
    control_plane: ControlPlane, namespace: Callable[[], str], tmp_path: Path
) -> None:
    """Against the real API server, the chart-like release in a namespace of its own."""
    db = namespace()
    chart_like = re.sub(r"\bdb\b", db, CHART_LIKE)
    kubeconfig = write_kubeconfig(control_plane, tmp_path / "kubeconfig", db)
    live = [d for d in yaml.safe_load_all(chart_like) if d]
    sts = next(d for d in live if d["kind"] == "StatefulSet")
    sts["spec"]["replicas"] = 5
    apply(control_plane, db, [sts])
    without_budget = "---\n".join(p for p in chart_like.split("---\n") if "pdb.yaml" not in p)
    result = post_render(with_replicas(without_budget, 1), env={"KUBECONFIG": str(kubeconfig)})
    assert (result.returncode, result.stdout) == (1, "")
    read = (
        f"etcd-chart post-render: read the cluster at {control_plane.server} "
        f"(context test, kubeconfig {kubeconfig} (KUBECONFIG))\n"
    )
    assert result.stderr == read + (
        "etcd/templates/statefulset.yaml: StatefulSet/etcd: spec.replicas: scales from 5 to 1 "
        "members at once, below the quorum of the running cluster (3), and nothing removes the "
        "members first (scale down in steps that keep a quorum: first to 3, then further; or let "
        "a hook remove them one at a time and annotate the StatefulSet etcd-chart/scale-down: "
        '"hook" (the chart does with scaleDown.enabled))\n'
    )
    result = post_render(chart_like, "--kubeconfig", str(kubeconfig))
    assert (result.returncode, result.stderr) == (0, read.replace("KUBECONFIG", "--kubeconfig"))
    assert '"initial-cluster-state": "existing"' in result.stdout
    offline = post_render(
        chart_like, env={"KUBECONFIG": str(kubeconfig), "ETCD_CHART_OFFLINE": "1"}
    )
    assert (offline.returncode, offline.stdout) == (0, chart_like)


def test_unreachable_cluster_is_exit_2(control_plane: ControlPlane, tmp_path: Path) -> None:
    url = unused_server(control_plane)
    kubeconfig = write_contexts(
        control_plane, tmp_path / "kubeconfig", "db", {"gone": None}, "gone", {"gone": url}
    )
    result = post_render(CHART_LIKE, env={"KUBECONFIG": str(kubeconfig)})
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"etcd-chart post-render: cannot reach {url}: ")
    assert result.stderr.endswith(
        " (check the kubeconfig and that the cluster is up; to render without it, pass --offline "
        "or set ETCD_CHART_OFFLINE=1)\n"
    )


def test_wrapper_works_from_any_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(WRAPPER)],
        input=CHART_LIKE,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "ETCD_CHART_NO_TTY": "1", "PYTHONPATH": ""},
        timeout=60,
    )
    assert (result.returncode, result.stderr, result.stdout) == (0, "", CHART_LIKE)


def _read_terminal(fd: int, until: str, timeout: float = 30) -> str:
    data = b""
    deadline = time.monotonic() + timeout
    while until.encode() not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    return data.decode().replace("\r\n", "\n")


def _controlling_terminal_child(slave: int, stdin_file: Path, stderr_file: Path) -> None:
    """In the child: new session, the pty as controlling terminal, stdin/stderr from files."""
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    os.dup2(os.open(stdin_file, os.O_RDONLY), 0)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.dup2(os.open(stderr_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)


def test_messages_reach_the_controlling_terminal(tmp_path: Path) -> None:
    stdin_file = tmp_path / "stream.yaml"
    stdin_file.write_text(with_replicas(CHART_LIKE, 4))
    stderr_file = tmp_path / "stderr.txt"
    master, slave = pty.openpty()
    # As Helm 4 runs the plugin (HELM_PLUGIN_NAME set): the hint to run the check by hand shows.
    env = {k: v for k, v in os.environ.items() if k != "ETCD_CHART_NO_TTY"}
    env["HELM_PLUGIN_NAME"] = "etcd-chart"
    process = subprocess.Popen(
        [str(WRAPPER)],
        preexec_fn=lambda: _controlling_terminal_child(slave, stdin_file, stderr_file),  # noqa: PLW1509
        pass_fds=(slave,),
        env=env,
        cwd=tmp_path,
    )
    try:
        os.close(slave)
        seen = _read_terminal(master, "to see the same check")
        assert process.wait(timeout=30) == 1
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(master)
    expected = (
        "etcd/templates/statefulset.yaml: StatefulSet/etcd: spec.replicas: 4 members: an even "
        "count tolerates 1 failed member(s), no more than 3 members do, and needs a larger "
        "quorum (3) (use an odd number such as 3 or 5, or annotate the StatefulSet "
        'etcd-chart/allow-even-replicas: "true")\n' + HINT
    )
    assert seen == expected
    assert stderr_file.read_text() == expected


def test_no_tty_switch(tmp_path: Path) -> None:
    stdin_file = tmp_path / "stream.yaml"
    stdin_file.write_text(with_replicas(CHART_LIKE, 4))
    stderr_file = tmp_path / "stderr.txt"
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [str(WRAPPER)],
        preexec_fn=lambda: _controlling_terminal_child(slave, stdin_file, stderr_file),  # noqa: PLW1509
        pass_fds=(slave,),
        env={**os.environ, "ETCD_CHART_NO_TTY": "1", "HELM_PLUGIN_NAME": "etcd-chart"},
        cwd=tmp_path,
    )
    try:
        os.close(slave)
        assert process.wait(timeout=30) == 1
        seen = _read_terminal(master, "never", timeout=0.5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(master)
    assert seen == ""
    assert stderr_file.read_text().endswith(HINT)
