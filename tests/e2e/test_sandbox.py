"""The sandbox boots real etcd clusters from the chart (through `helm install`) and from the
Kubernetes-docs StatefulSet (post-rendered and applied), on the real control plane."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from etcd_chart.sandbox.client import Sandbox
from etcd_versions import etcd_release
from kube import deployed_revision
from membership import members, ordinal, statefulset_pods
from strays import subnet_of

CLI = Callable[..., subprocess.CompletedProcess[str]]
NoStrays = Callable[[Path, "str | None"], None]

pytestmark = pytest.mark.e2e

DOCS_MANIFEST = Path(__file__).parent / "data" / "k8s-docs-statefulset.yaml"
# The docs' StatefulSet sets no securityContext: PodSecurity `restricted` (the sandbox's default,
# which the chart meets) refuses its pods.
BASELINE = ("--pod-security", "baseline")


def docs_manifest(
    tmp_path: Path, replicas: int = 3, image: str | None = None, extra_args: list[str] | None = None
) -> str:
    text = DOCS_MANIFEST.read_text().replace("replicas: 3", f"replicas: {replicas}")
    # The docs' etcd 3.5.15 becomes the 3.5 release the tests have binaries for.
    image = image or f"quay.io/coreos/etcd:v{etcd_release('3.5')}"
    text = text.replace("quay.io/coreos/etcd:v3.5.15", image)
    for arg in extra_args or []:
        text = text.replace(
            "            - --name=$(HOSTNAME)\n",
            f"            - --name=$(HOSTNAME)\n            - {arg}\n",
        )
    path = tmp_path / f"docs-{replicas}.yaml"
    path.write_text(text)
    return str(path)


def member_names(sb: Sandbox, pod: str) -> list[str]:
    listed = members(sb, pod)
    assert all(not m.get("isLearner") for m in listed)
    return sorted((m["name"] for m in listed), key=ordinal)


def put(sb: Sandbox, pod: str, key: str, value: str) -> None:
    result = sb.etcdctl(pod, "put", key, value)
    assert (result.returncode, result.stdout, result.stderr) == (0, "OK\n", "")


def get(sb: Sandbox, pod: str, key: str) -> str:
    result = sb.etcdctl(pod, "get", key, "--print-value-only")
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_replicates(sb: Sandbox, pods: list[str], key: str = "/sandbox/greeting") -> None:
    put(sb, pods[0], key, f"written through {pods[0]}")
    for pod in pods:
        assert get(sb, pod, key) == f"written through {pods[0]}\n"


@pytest.mark.parametrize("replicas", [3, 1, 5, 7])
def test_chart_boots_members_that_replicate(
    sandbox: Callable[..., Sandbox], chart_dir: Path, replicas: int
) -> None:
    extra = [] if replicas == 3 else ["--set", f"replicas={replicas}"]
    sb = sandbox(str(chart_dir), *extra)
    pods = statefulset_pods(sb)
    assert pods == [f"etcd-{i}" for i in range(replicas)]
    status = sb.status()
    assert [p["ready"] for p in status["pods"] if p["name"] in pods] == [True] * replicas
    assert member_names(sb, "etcd-0") == pods
    assert_replicates(sb, pods)


@pytest.mark.parametrize("replicas", [3, 5])
def test_kubernetes_docs_statefulset_boots_through_the_post_renderer(
    sandbox: Callable[..., Sandbox], tmp_path: Path, replicas: int
) -> None:
    # Its pods want a node each (required anti-affinity on the hostname).
    nodes = ("--nodes", str(replicas))
    sb = sandbox("--manifest", docs_manifest(tmp_path, replicas), *BASELINE, *nodes)
    pods = statefulset_pods(sb)
    assert pods == [f"etcd-{i}" for i in range(replicas)]
    assert member_names(sb, pods[-1]) == pods
    assert_replicates(sb, pods)
    addresses = {p["name"]: p["address"] for p in sb.status()["pods"]}
    subnet = subnet_of(sb.state_dir)
    assert addresses == {f"etcd-{i}": f"{subnet}.{10 + i}" for i in range(replicas)}


@pytest.mark.parametrize("source", ["chart", "k8s-docs"])
def test_data_survives_restarts_of_each_member_and_of_all(
    sandbox: Callable[..., Sandbox], chart_dir: Path, tmp_path: Path, source: str
) -> None:
    args = (
        [str(chart_dir)]
        if source == "chart"
        else ["--manifest", docs_manifest(tmp_path), *BASELINE]
    )
    sb = sandbox(*args)
    pods = statefulset_pods(sb)
    put(sb, "etcd-0", "/durable", "before")
    for pod in pods:
        sb.restart(pod)
        sb.wait_ready(120)
        assert get(sb, pod, "/durable") == "before\n"
    sb.kill("etcd-1", "KILL")
    sb.wait_ready(120)
    assert next(p for p in sb.status()["pods"] if p["name"] == "etcd-1")["restarts"] >= 1
    sb.stop_all()
    stopped = sb.status()["pods"]
    assert [(p["phase"], p["ready"]) for p in stopped] == [("Stopped", False)] * len(pods)
    assert [c["pid"] for p in stopped for c in p["containers"].values() if c["pid"]] == []
    sb.start_all()
    sb.wait_ready(180)
    assert member_names(sb, "etcd-2") == pods
    for pod in pods:
        assert get(sb, pod, "/durable") == "before\n"


def test_up_again_in_a_kept_state_dir_brings_the_data_back_and_upgrades(
    sandbox: Callable[..., Sandbox], chart_dir: Path
) -> None:
    """`down` keeps the control plane's data and the volumes; `up` in the same state dir starts
    the cluster again as after a power cut and upgrades the release with what it is given."""
    sb = sandbox(str(chart_dir))
    put(sb, "etcd-0", "/kept", "across down and up")
    down = sb.down()
    assert down.returncode == 0, down.stderr
    sb.up(str(chart_dir), "--set", "replicas=5", timeout=300)
    pods = [f"etcd-{i}" for i in range(5)]
    assert statefulset_pods(sb) == pods
    assert member_names(sb, "etcd-4") == pods
    for pod in pods:
        assert get(sb, pod, "/kept") == "across down and up\n"
    assert deployed_revision(sb) == 2


def test_two_releases_side_by_side_see_only_their_own_members(
    sandbox: Callable[..., Sandbox], chart_dir: Path
) -> None:
    first = sandbox(str(chart_dir), "--name", "alpha", "--namespace", "team-a", name="a")
    second = sandbox(
        str(chart_dir), "--name", "beta", "--namespace", "team-b", "--set", "replicas=1", name="b"
    )
    alpha = statefulset_pods(first, "alpha-etcd") or statefulset_pods(first, "alpha")
    beta = statefulset_pods(second, "beta-etcd") or statefulset_pods(second, "beta")
    assert len(alpha) == 3 and len(beta) == 1
    assert subnet_of(first.state_dir) != subnet_of(second.state_dir)
    assert member_names(first, alpha[0]) == alpha
    assert member_names(second, beta[0]) == beta
    put(first, alpha[0], "/owner", "alpha")
    put(second, beta[0], "/owner", "beta")
    assert [get(first, p, "/owner") for p in alpha] == ["alpha\n"] * 3
    assert get(second, beta[0], "/owner") == "beta\n"


# --- errors: a clear message, a non-zero exit, nothing left running ---------------------


def test_pods_the_namespace_refuses_are_named_with_the_reason(
    tmp_path: Path, sandbox_cli: CLI, no_strays: NoStrays
) -> None:
    state = tmp_path / "state"
    manifest = docs_manifest(tmp_path)
    result = sandbox_cli("up", "--manifest", manifest, "--state-dir", str(state), "--timeout", "15")
    _assert_failed_cleanly(
        result,
        state,
        2,
        "timed out waiting for every pod to be Ready\nStatefulSet default/etcd: 0/3 ready\n"
        "  StatefulSet/etcd: FailedCreate: Create Pod etcd-0 in StatefulSet etcd failed error: "
        'pods "etcd-0" is forbidden: violates PodSecurity "restricted:latest": '
        "allowPrivilegeEscalation != false",
        no_strays,
    )
    assert (
        "\n  Pod/etcd-0 in the API: absent (not created by the controller)"
        "\n  Pod/etcd-1 in the API: absent (not created by the controller)"
        "\n  Pod/etcd-2 in the API: absent (not created by the controller)"
        "\nthe sandbox's last events:\n"
    ) in result.stderr, result.stderr


def _assert_failed_cleanly(
    result: subprocess.CompletedProcess[str],
    state_dir: Path,
    code: int,
    message: str,
    no_strays: NoStrays,
) -> None:
    assert (result.returncode, message in result.stderr) == (code, True), result.stderr
    assert result.stdout == ""
    assert not (state_dir / "daemon.pid").exists()
    no_strays(state_dir, subnet_of(state_dir))


def test_missing_etcd_binary(tmp_path: Path, sandbox_cli: CLI, no_strays: NoStrays) -> None:
    empty = tmp_path / "empty-cache"
    (empty / "bin").mkdir(parents=True)
    env = {**os.environ, "ETCD_CHART_CACHE": str(empty), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    state = tmp_path / "state"
    result = sandbox_cli(
        "up", "--manifest", docs_manifest(tmp_path), "--state-dir", str(state), env=env
    )
    version = etcd_release("3.5")
    _assert_failed_cleanly(
        result,
        state,
        2,
        f"container etcd: image 'quay.io/coreos/etcd:v{version}' runs etcd {version}, and this "
        f"machine has no etcd {version} (looked in {empty}/etcd/v{version}/ and PATH; found no "
        "etcd at all). Pass `--bin-dir DIR`",
        no_strays,
    )


WEB_DEPLOYMENT = """
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
"""


def test_unknown_image_is_named(tmp_path: Path, sandbox_cli: CLI, no_strays: NoStrays) -> None:
    state = tmp_path / "state"
    manifest = Path(docs_manifest(tmp_path))
    manifest.write_text(manifest.read_text() + WEB_DEPLOYMENT)
    result = sandbox_cli("up", "--manifest", str(manifest), "--state-dir", str(state))
    _assert_failed_cleanly(
        result,
        state,
        1,
        "Deployment default/web: container web: image 'nginx:1.27' has no local program "
        "in the sandbox",
        no_strays,
    )


def test_loopback_listener_cannot_be_emulated(
    tmp_path: Path, sandbox_cli: CLI, no_strays: NoStrays
) -> None:
    state = tmp_path / "state"
    manifest = docs_manifest(tmp_path, extra_args=["--listen-client-urls=http://127.0.0.1:2379"])
    result = sandbox_cli("up", "--manifest", manifest, "--state-dir", str(state))
    _assert_failed_cleanly(
        result,
        state,
        1,
        "container etcd: --listen-client-urls listens on http://127.0.0.1:2379: "
        "a loopback listener cannot be emulated",
        no_strays,
    )


def test_address_in_use(tmp_path: Path, sandbox_cli: CLI, no_strays: NoStrays) -> None:
    """The kubelet does not start the pod whose address is taken (retrying, as a kubelet retries
    a pod it cannot create), and the not-Ready report says which pod and who is in the way."""
    state = tmp_path / "state"
    subnet = "127.201.77"
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind((f"{subnet}.11", 2379))
        taken.listen()
        result = sandbox_cli(
            "up", "--manifest", docs_manifest(tmp_path), "--state-dir", str(state),
            "--subnet", subnet, *BASELINE, "--timeout", "20",
        )  # fmt: skip
    # Which pod gets .11 is the order the pods reach their nodes.
    pod = "etcd-" + (re.search(r"Pod default/etcd-(\d) container", result.stderr) or ["", "?"])[1]
    _assert_failed_cleanly(
        result,
        state,
        2,
        f"Pod default/{pod} container etcd port etcd-client: address {subnet}.11:2379 "
        "is already in use by another process",
        no_strays,
    )


def test_down_stops_everything_even_after_the_daemon_died(
    sandbox: Callable[..., Sandbox], tmp_path: Path, no_strays: NoStrays
) -> None:
    sb = sandbox("--manifest", docs_manifest(tmp_path, 1), *BASELINE)
    subnet = subnet_of(sb.state_dir)
    daemon = int((sb.state_dir / "daemon.pid").read_text())
    etcd_pid = sb.status()["pods"][0]["containers"]["etcd"]["pid"]
    os.kill(daemon, 9)
    result = sb.down()
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert re.fullmatch(r"stopped \d+ process\(es\)\n", result.stdout), result.stdout
    assert (
        not Path(f"/proc/{etcd_pid}/cmdline").exists()
        or not Path(f"/proc/{etcd_pid}/cmdline").read_bytes()
    )
    no_strays(sb.state_dir, subnet)
    assert [p.is_dir() for p in (sb.state_dir / "volumes").glob("*/member")] == [True]


def test_tls_release_boots_and_status_names_the_client_files(
    sandbox: Callable[..., Sandbox], chart_dir: Path
) -> None:
    import ssl
    import urllib.parse

    sb = sandbox(str(chart_dir), "--set", "tls.enabled=true")
    pods = statefulset_pods(sb)
    assert member_names(sb, "etcd-1") == pods
    assert_replicates(sb, pods, "/tls/greeting")
    entry = next(p for p in sb.status()["pods"] if p["name"] == "etcd-0")
    tls = entry["tls"]
    assert sorted(tls) == ["ca", "cert", "key"]
    assert entry["client_url"] == f"https://{entry['address']}:2379"
    context = ssl.create_default_context(cafile=tls["ca"])
    context.load_cert_chain(tls["cert"], tls["key"])
    server_name = urllib.parse.urlsplit(entry["advertised_client_url"]).hostname
    with (
        socket.create_connection((entry["address"], 2379), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as conn,
    ):
        conn.sendall(
            f"GET /version HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode()
        )
        reply = conn.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 200 OK"), reply
    assert '"etcdserver":"3.' in reply
