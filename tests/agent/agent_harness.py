"""Harness for the member agent tests: pods as real processes with their own address and name.

Each pod of a test release gets a loopback address (127.77.B.i+1, a free block per release) and
the DNS name the headless Service would give it, through a private mount namespace in which a
release-wide hosts file is bind-mounted over /etc/hosts (`unshare -m`). The agent and etcd run
inside it exactly as in a pod: the agent resolves `<pod>.<headless>.<ns>.svc.<domain>`, etcd
advertises those names. Every process is killed at teardown.

The Kubernetes API is real: the shared control plane of the test process (the `control_plane`
fixture, tests/conftest.py), a fresh namespace per release. In it the harness creates what the
chart renders for the agent (`helm template`): the ServiceAccount, Role and RoleBinding of the
member pods and those of the scale-down hook. The agent reaches the API server by its address
with a bound token of its ServiceAccount (TokenRequest), the control plane's CA and the
namespace, in a directory laid out like the pod's projected `kube-api-access` volume; `scale-down`
runs as the hook's ServiceAccount, every other command as the member pods'. What a test seeds
or checks (the cluster record, the StatefulSet, a pod) it writes and reads as the admin.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import functools
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from etcd_chart.helm import find_tool
from etcd_chart.sandbox.controlplane import ControlPlane
from realapi import api, apply, service_account_token

CHART = Path(__file__).resolve().parents[2] / "chart"
# The agent's package directory: run as `python3 AGENT COMMAND`, as the pods run /opt/etcd-agent.
AGENT = CHART / "files" / "etcd-agent"
# Its modules are imported by the unit tests as the agent imports them: by their own names.
sys.path.insert(0, str(AGENT))
STS, HEADLESS, DOMAIN, TOKEN = "etcd", "etcd-headless", "cluster.local", "tkn"
RECORD = "etcd-cluster-record"
# The chart's ServiceAccounts for release `etcd`: the member pods' and the scale-down hook's.
MEMBER_ACCOUNT, HOOK_ACCOUNT = "etcd", "etcd-scale-down"
# Plural resource names of the objects the tests seed, by kind.
PLURALS = {"ConfigMap": "configmaps", "Pod": "pods", "StatefulSet": "statefulsets"}
HOSTS_ORDINALS = 12
# The interpreter that runs the agent (the pods use python:3.13-alpine; this may differ).
AGENT_PYTHON = os.environ.get("ETCD_AGENT_TEST_PYTHON") or sys.executable


def _free_block() -> int:
    """A 127.77.B.0/24 block whose first addresses have nothing on the etcd ports."""
    for _ in range(50):
        block = random.randint(1, 254)
        busy = False
        for host in range(1, 6):
            for port in (2379, 2380):
                with socket.socket() as probe:
                    try:
                        probe.bind((f"127.77.{block}.{host}", port))
                    except OSError:
                        busy = True
        if not busy:
            return block
    raise RuntimeError("no free 127.77.B.0/24 block")


_PLACEHOLDER_NAMESPACE = "agent-placeholder"


@functools.cache
def _rendered_rbac(replicas: int) -> str:
    """The chart's ServiceAccounts, Roles and RoleBindings (default values, release `etcd` of
    `replicas` members) rendered in a placeholder namespace, as one JSON list. An even count
    needs allowEvenReplicas, 2 needs the PodDisruptionBudget off; neither changes the RBAC."""
    rendered = subprocess.run(
        [find_tool("helm4"), "template", "etcd", str(CHART)]
        + ["--namespace", _PLACEHOLDER_NAMESPACE, "--set", f"replicas={replicas}"]
        + ["--set", "allowEvenReplicas=true", "--set", "pdb.enabled=false"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rendered.returncode == 0, f"helm template: {rendered.stderr}"
    kinds = ("ServiceAccount", "Role", "RoleBinding")
    objects = [o for o in yaml.safe_load_all(rendered.stdout) if o and o["kind"] in kinds]
    names = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert names == sorted(
        (kind, name) for kind in kinds for name in (MEMBER_ACCOUNT, HOOK_ACCOUNT)
    )
    return json.dumps(objects)


def chart_rbac(namespace: str, replicas: int) -> list[dict[str, Any]]:
    """What the chart gives the agent in `namespace`: each ServiceAccount with its Role and
    RoleBinding, exactly as rendered (the Role of the member pods names each pod it may delete,
    so it depends on `replicas`)."""
    quoted = json.dumps(_PLACEHOLDER_NAMESPACE)
    return list(json.loads(_rendered_rbac(replicas).replace(quoted, json.dumps(namespace))))


class Pod:
    def __init__(self, release: Release, index: int):
        self.index = index
        self.name = f"{STS}-{index}"
        self.ip = f"127.77.{release.block}.{index + 1}"
        self.dir = release.root / self.name
        self.volume = self.dir / "volume"
        self.output = self.dir / "run" / "etcd.conf.json"
        self.dns = f"{self.name}.{HEADLESS}.{release.namespace}.svc.{DOMAIN}"
        self.url = f"{release.scheme}://{self.ip}:2379"
        self.peer_url = f"{release.scheme}://{self.dns}:2380"
        self.etcd: subprocess.Popen[bytes] | None = None
        self.volume.mkdir(parents=True)

    @property
    def data_dir(self) -> Path:
        return self.volume / "data"


class Release:
    """One etcd "StatefulSet" of up to HOSTS_ORDINALS pods, in a namespace of its own on the real
    API server, with the chart's RBAC for the agent."""

    def __init__(
        self,
        root: Path,
        etcd_bin: str,
        plane: ControlPlane,
        namespace: str,
        pods: int = 5,
        tls: bool = False,
    ):
        self.root = root
        self.etcd_bin = etcd_bin
        self.plane = plane
        self.namespace = namespace
        self.block = _free_block()
        self.tls = root / "tls" if tls else None
        self.scheme = "https" if tls else "http"
        if self.tls is not None:
            make_certificates(self.tls, self.block, namespace)
        self.context = self._client_context()
        self.processes: list[subprocess.Popen[Any]] = []
        self.sa_dir = root / "serviceaccount"
        self.hook_sa_dir = root / "serviceaccount-scale-down"
        self.pods = [Pod(self, i) for i in range(pods)]
        self._grant_agent_access(pods)
        self.hosts = root / "hosts"
        lines = ["127.0.0.1 localhost"]
        for i in range(HOSTS_ORDINALS):
            pod = f"{STS}-{i}"
            lines.append(
                f"127.77.{self.block}.{i + 1} {pod}.{HEADLESS}.{namespace}.svc.{DOMAIN}"
                f" {pod}.{HEADLESS}.{namespace}.svc {pod}.{HEADLESS}"
            )
        self.hosts.write_text("\n".join(lines) + "\n")
        self.auth_file = root / "auth.json"
        self.root_password_file = root / "root-password"

    def _grant_agent_access(self, replicas: int) -> None:
        """The chart's RBAC for the agent and the hook, and for each ServiceAccount a directory
        like the pod's projected `kube-api-access` volume (token, ca.crt, namespace)."""
        tokens = {
            account: service_account_token(self.plane, self.namespace, account)
            for account in (MEMBER_ACCOUNT, HOOK_ACCOUNT)
        }
        # After the tokens: their bare ServiceAccounts take the chart's fields here.
        apply(self.plane, self.namespace, chart_rbac(self.namespace, replicas))
        record = self.path("v1", "configmaps", RECORD)
        for account, directory in ((MEMBER_ACCOUNT, self.sa_dir), (HOOK_ACCOUNT, self.hook_sa_dir)):
            directory.mkdir()
            (directory / "token").write_text(tokens[account])
            shutil.copy(self.plane.pki.ca, directory / "ca.crt")
            (directory / "namespace").write_text(self.namespace)
            # RBAC takes effect when the API server's informers see the RoleBinding: until
            # then the record (both Roles may read it) answers 403, after it 404.
            self.wait_for(
                f"the RoleBinding of {account} to take effect",
                lambda token=tokens[account]: api(self.plane, token, "GET", record) == 404,
                timeout=15,
            )

    # -- configuration ---------------------------------------------------------------------

    def initial_cluster(self, replicas: int) -> str:
        return ",".join(f"{p.name}={p.peer_url}" for p in self.pods[:replicas])

    def template(self, replicas: int, state: str = "new") -> Path:
        """The `F-config` ConfigMap's etcd.conf.json for `replicas` members."""
        dns = f"$(POD_NAME).{HEADLESS}.{self.namespace}.svc.{DOMAIN}"
        config = {
            "name": "$(POD_NAME)",
            "data-dir": "$(POD_VOLUME)/data",
            "listen-peer-urls": f"{self.scheme}://$(POD_IP_URL_HOST):2380",
            "listen-client-urls": f"{self.scheme}://$(POD_IP_URL_HOST):2379",
            "initial-advertise-peer-urls": f"{self.scheme}://{dns}:2380",
            "advertise-client-urls": f"{self.scheme}://{dns}:2379",
            "initial-cluster": self.initial_cluster(replicas),
            "initial-cluster-state": state,
            "initial-cluster-token": TOKEN,
            "log-level": "warn",
            # Typed by the agent: etcd refuses a string where it wants a number or a bool.
            "x-extra-flags": [
                "--heartbeat-interval=50",
                "--election-timeout=500",
                "--strict-reconfig-check=true",
            ],
        }
        if self.tls is not None:
            for section in ("client-transport-security", "peer-transport-security"):
                config[section] = {
                    "cert-file": str(self.tls / "member.crt"),
                    "key-file": str(self.tls / "member.key"),
                    "trusted-ca-file": str(self.tls / "ca.crt"),
                    "client-cert-auth": True,
                }
        path = self.root / f"template-{replicas}-{state}.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def env(self, pod: Pod, template: Path | None = None, **extra: str) -> dict[str, str]:
        server = urllib.parse.urlsplit(self.plane.server)
        assert server.hostname is not None and server.port is not None, self.plane.server
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "POD_NAME": pod.name,
            "POD_NAMESPACE": self.namespace,
            "POD_IP": pod.ip,
            "POD_VOLUME": str(pod.volume),
            "ETCD_AGENT_TEMPLATE": str(template or self.root / "no-template.json"),
            "ETCD_AGENT_OUTPUT": str(pod.output),
            "ETCD_AGENT_RECORD": RECORD,
            "ETCD_AGENT_CLIENT_PORT": "2379",
            "ETCD_AGENT_CLIENT_SCHEME": self.scheme,
            "ETCD_AGENT_HEADLESS_SERVICE": HEADLESS,
            "ETCD_AGENT_CLUSTER_DOMAIN": DOMAIN,
            "ETCD_AGENT_STATEFULSET": STS,
            "ETCD_AGENT_AUTH_FILE": str(self.auth_file),
            "ETCD_AGENT_ROOT_PASSWORD_FILE": str(self.root_password_file),
            "ETCD_AGENT_SERVICEACCOUNT_DIR": str(self.sa_dir),
            "KUBERNETES_SERVICE_HOST": server.hostname,
            "KUBERNETES_SERVICE_PORT": str(server.port),
        }
        if self.tls is not None:
            env["ETCD_AGENT_CACERT"] = str(self.tls / "ca.crt")
            env["ETCD_AGENT_CERT"] = str(self.tls / "client.crt")
            env["ETCD_AGENT_KEY"] = str(self.tls / "client.key")
        env.update(extra)
        return env

    def agent_env(
        self, pod: Pod, args: tuple[str, ...], template: Path | None, extra: dict[str, str]
    ) -> dict[str, str]:
        """`scale-down` runs in the hook's Job, as the hook's ServiceAccount; every other
        command in a member pod, as the member pods' ServiceAccount."""
        account = self.hook_sa_dir if args[:1] == ("scale-down",) else self.sa_dir
        return self.env(pod, template, **{"ETCD_AGENT_SERVICEACCOUNT_DIR": str(account), **extra})

    def _client_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls / "ca.crt"))
        context.load_cert_chain(str(self.tls / "client.crt"), str(self.tls / "client.key"))
        return context

    # -- processes -------------------------------------------------------------------------

    def _in_pod(self, argv: list[str]) -> list[str]:
        script = 'mount --bind "$0" /etc/hosts && exec "$@"'
        prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(self.hosts)]
        return [*prefix, *argv]

    def spawn(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            process = subprocess.Popen(
                self._in_pod(argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def spawn_agent(
        self,
        pod: Pod,
        *args: str,
        template: Path | None = None,
        program: Path = AGENT,
        **extra: str,
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """Start the agent (`program`, a copy of it when a test changes the code) in `pod`."""
        log = pod.dir / f"agent-{len(self.processes)}.log"
        argv = [AGENT_PYTHON, str(program), *args]
        return self.spawn(argv, self.agent_env(pod, args, template, extra), log), log

    def agent(
        self, pod: Pod, *args: str, template: Path | None = None, timeout: float = 90, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        """Run the agent in `pod` and wait for it; stdout and stderr kept apart."""
        process = subprocess.Popen(
            self._in_pod([AGENT_PYTHON, str(AGENT), *args]),
            env=self.agent_env(pod, args, template, extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.processes.append(process)
        stdout, stderr = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def bootstrap(self, template: Path, replicas: int) -> list[str]:
        """The first `replicas` pods run `prepare` at once (each must exit 0), then etcd, until
        every one is healthy; returns each pod's prepare log."""
        spawned = [
            self.spawn_agent(pod, "prepare", "--timeout", "60", template=template)
            for pod in self.pods[:replicas]
        ]
        logs = []
        for process, log in spawned:
            assert process.wait(timeout=60) == 0, log.read_text()
            logs.append(log.read_text())
        for pod in self.pods[:replicas]:
            self.start_etcd(pod)
        for pod in self.pods[:replicas]:
            self.wait_healthy(pod)
        return logs

    def start_etcd(self, pod: Pod) -> None:
        assert pod.etcd is None or pod.etcd.poll() is not None, f"{pod.name} runs already"
        argv = [self.etcd_bin, f"--config-file={pod.output}"]
        pod.etcd = self.spawn(argv, self.env(pod), pod.dir / "etcd.log")

    def stop_etcd(self, pod: Pod, sig: int = signal.SIGKILL) -> None:
        if pod.etcd is not None and pod.etcd.poll() is None:
            os.killpg(pod.etcd.pid, sig)
            pod.etcd.wait(timeout=20)
        pod.etcd = None

    def new_pod(self, pod: Pod) -> None:
        """The pod is recreated: its emptyDir (the runtime dir with the written config) is new."""
        shutil.rmtree(pod.output.parent, ignore_errors=True)

    def lose_volume(self, pod: Pod) -> None:
        shutil.rmtree(pod.volume)
        pod.volume.mkdir()

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)

    # -- the Kubernetes API as the admin: what a test seeds and checks ------------------------

    def path(self, api_version: str, plural: str, name: str = "") -> str:
        """The API path of `plural` (of `name`) in this release's namespace."""
        group = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        path = f"{group}/namespaces/{self.namespace}/{plural}"
        return f"{path}/{name}" if name else path

    def get_object(self, api_version: str, plural: str, name: str) -> dict[str, Any] | None:
        """The live object, None when the API server says 404."""
        status, answer = self.plane.api("GET", self.path(api_version, plural, name))
        if status == 404:
            return None
        assert status == 200, f"GET {plural}/{name}: HTTP {status} {answer}"
        return dict(answer)

    def delete_object(self, api_version: str, plural: str, name: str) -> bool:
        """Deletes it; False when there was none."""
        status, answer = self.plane.api("DELETE", self.path(api_version, plural, name))
        if status == 404:
            return False
        assert status in (200, 202), f"DELETE {plural}/{name}: HTTP {status} {answer}"
        return True

    def put_object(self, obj: dict[str, Any]) -> None:
        """Creates `obj` in this namespace, or replaces the live one of that name (whatever its
        resourceVersion: the test's word is the last)."""
        body = copy.deepcopy(obj)
        metadata = body["metadata"]
        for system in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            metadata.pop(system, None)
        metadata["namespace"] = self.namespace
        plural = PLURALS[body["kind"]]
        status, answer = self.plane.api("POST", self.path(body["apiVersion"], plural), body)
        for _ in range(20):  # controllers write the status too: a conflict is tried again
            if status != 409:
                break
            live = self.get_object(body["apiVersion"], plural, metadata["name"])
            assert live is not None, f"{plural}/{metadata['name']} went away"
            metadata["resourceVersion"] = live["metadata"]["resourceVersion"]
            path = self.path(body["apiVersion"], plural, metadata["name"])
            status, answer = self.plane.api("PUT", path, body)
        assert status in (200, 201), f"{plural}/{metadata['name']}: HTTP {status} {answer}"

    def put_statefulset(self, replicas: int) -> None:
        """The release's StatefulSet with `replicas`: what the agent and the hook read of it.
        Its controller creates pod etcd-0 only (ordered: etcd-1 waits for etcd-0 to be Ready,
        and with no node it stays Pending), so the pods a test creates are left alone."""
        labels = {"app.kubernetes.io/name": "etcd", "app.kubernetes.io/instance": "etcd"}
        self.put_object(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": STS},
                "spec": {
                    "replicas": replicas,
                    "serviceName": HEADLESS,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec()},
                },
            }
        )

    def put_pod(self, name: str) -> None:
        """A pod of that name (unlabelled: no StatefulSet adopts it); never scheduled."""
        self.put_object(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec()}
        )

    # -- talking to etcd from the test (by IP: the test process has no private hosts file) --

    def call(self, pod: Pod, path: str, body: dict[str, Any], timeout: float = 5) -> Any:
        """POST to etcd's gateway; as root once auth is on (etcd 3.6 and later also want a user
        for the member list and status)."""
        try:
            return self._post(pod, path, body, timeout)
        except urllib.error.HTTPError as err:
            if "user name is empty" not in err.read().decode(errors="replace"):
                raise
        password = self.root_password_file.read_text().strip()
        login = self._post(pod, "/v3/auth/authenticate", {"name": "root", "password": password})
        return self._post(pod, path, body, timeout, str(login["token"]))

    def _post(
        self, pod: Pod, path: str, body: dict[str, Any], timeout: float = 5, token: str = ""
    ) -> Any:
        request = urllib.request.Request(
            pod.url + path, data=json.dumps(body).encode(), method="POST"
        )
        if token:
            request.add_header("Authorization", token)
        with urllib.request.urlopen(request, timeout=timeout, context=self.context) as response:
            return json.loads(response.read())

    def members(self, pod: Pod) -> list[dict[str, Any]]:
        answer = self.call(pod, "/v3/cluster/member/list", {"linearizable": True})
        return list(answer["members"])

    def cluster_id(self, pod: Pod) -> str:
        answer = self.call(pod, "/v3/cluster/member/list", {"linearizable": True})
        return format(int(answer["header"]["cluster_id"]), "x")

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except OSError:
                pass
            if time.monotonic() > end:
                logs = "\n".join(
                    f"--- {p.name}\n{(p.dir / 'etcd.log').read_text()[-3000:]}"
                    for p in self.pods
                    if (p.dir / "etcd.log").exists()
                )
                raise AssertionError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.2)

    def wait_healthy(self, pod: Pod) -> None:
        def healthy() -> bool:
            health = pod.url + "/health"
            with urllib.request.urlopen(health, timeout=2, context=self.context) as response:
                return bool(json.loads(response.read())["health"] == "true")

        self.wait_for(f"{pod.name} healthy", healthy)

    def wait_started(self, pod: Pod, via: Pod) -> None:
        """Until `pod` has published its client URLs (it started, as voter or learner)."""

        def started() -> bool:
            return any(m.get("name") == pod.name and m.get("clientURLs") for m in self.members(via))

        self.wait_for(f"{pod.name} started", started)

    def put(self, pod: Pod, key: str, value: str) -> None:
        self.call(pod, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def get(self, pod: Pod, key: str) -> str | None:
        answer = self.call(pod, "/v3/kv/range", {"key": _b64(key)})
        kvs = answer.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def pod_spec() -> dict[str, Any]:
    """A valid pod spec, like the chart's in what the API server checks (its ServiceAccount, no
    token automounted). No node matches its selector: it stays Pending, so that deleting it is
    immediate (a pod no kubelet runs has nothing to wait for)."""
    return {
        "serviceAccountName": MEMBER_ACCOUNT,
        "automountServiceAccountToken": False,
        "nodeSelector": {"etcd-chart.test/no-such-node": "true"},
        "containers": [{"name": "etcd", "image": "registry.invalid/etcd:test"}],
    }


def make_certificates(directory: Path, block: int, namespace: str) -> None:
    """A CA, one member certificate (server and peer, every pod name and address) and a client
    certificate with CN root, written as ca.crt, member.crt/key, client.crt/key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("agent test CA"))
        .issuer_name(name("agent test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(stem: str, common: str, names: list[x509.GeneralName]) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        write(stem, builder.sign(ca_key, hashes.SHA256()), key)

    # Peers dial from 127.0.0.1 (no source address is bound), and etcd checks a peer's
    # certificate against the address the connection comes from.
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    for i in range(HOSTS_ORDINALS):
        sans.append(x509.DNSName(f"{STS}-{i}.{HEADLESS}.{namespace}.svc.{DOMAIN}"))
        sans.append(x509.IPAddress(ipaddress.ip_address(f"127.77.{block}.{i + 1}")))
    leaf("member", "etcd member", sans)
    leaf("client", "root", [])


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
