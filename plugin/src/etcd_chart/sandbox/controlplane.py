"""A real Kubernetes control plane for the sandbox: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler as child processes on one loopback address, with their own PKI.

The binaries are built from their Go modules by `ci/build-go-tools.sh` (see README); they are
found, in order, in `--bin-dir`, `$KUBEBUILDER_ASSETS` (controller-runtime envtest's convention),
the repository cache, and PATH. Every process writes a log under `ROOT/logs/` and is recorded in
the state directory's process record, so `sandbox down` finds it even after a crash.

```
ROOT/                  (STATE/control-plane)
  pki/                 CA, serving and client certificates, the ServiceAccount signing key
  etcd/                the control plane's own etcd data
  admin.kubeconfig     system:masters, for helm, kubectl and the tests
  controller-manager.kubeconfig, scheduler.kubeconfig
  logs/                one file per process
```
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization

from etcd_chart import x509
from etcd_chart.helm import REPO_ROOT

CACHE = Path(os.environ.get("ETCD_CHART_CACHE", REPO_ROOT / ".cache"))
# Program -> the cache folder ci/build-go-tools.sh builds it into (CACHE/<folder>/<version>/).
PROGRAMS = {
    "kube-apiserver": "kubernetes",
    "kube-controller-manager": "kubernetes",
    "kube-scheduler": "kubernetes",
}
CERT_MANAGER = "cert-manager-controller"

APISERVER_PORT = 6443
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
CERT_MANAGER_METRICS_PORT = 9402
ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Allocated to Services only; no packet is ever sent there (pods get the API server's loopback
# address in KUBERNETES_SERVICE_HOST).
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
CERT_LIFETIME = timedelta(days=365)
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
CLUSTER_ROLE_BINDINGS_PATH = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"


class ControlPlaneError(RuntimeError):
    """The control plane cannot be found, started or reached; the message says what to do."""


@dataclass(frozen=True)
class Binaries:
    apiserver: str
    controller_manager: str
    scheduler: str
    etcd: str
    cert_manager: str | None = None

    @property
    def cert_manager_crds(self) -> Path | None:
        """cert-manager's CRDs of the same release, in `crds/` beside its controller."""
        return Path(self.cert_manager).parent / "crds" if self.cert_manager else None


# Seconds a stateless control-plane process gets between SIGTERM and SIGKILL when stopping.
STATELESS_GRACE = 1.0


def _version_key(name: str) -> tuple[int, ...]:
    parts = name.lstrip("v").split(".")
    return tuple(int(part) if part.isdigit() else -1 for part in parts)


def _search_dirs(bin_dir: str | None, folder: str) -> list[tuple[str, Path]]:
    dirs: list[tuple[str, Path]] = []
    if bin_dir:
        dirs.append(("--bin-dir", Path(bin_dir)))
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        dirs.append(("KUBEBUILDER_ASSETS", Path(assets)))
    built = sorted(
        (path for path in (CACHE / folder).glob("v*") if path.is_dir()),
        key=lambda path: _version_key(path.name),
        reverse=True,
    )
    if built:
        dirs.extend(("the cache", path) for path in built)
    else:
        dirs.append(("the cache", CACHE / folder))
    return dirs


def _find(program: str, folder: str, bin_dir: str | None) -> str | None:
    for _, directory in _search_dirs(bin_dir, folder):
        candidate = directory / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(program)


def find_binaries(etcd: str, bin_dir: str | None = None, cert_manager: bool = False) -> Binaries:
    """The control-plane programs (and cert-manager's controller when asked for), each from the
    first place that has it: `--bin-dir`, `$KUBEBUILDER_ASSETS`, the cache, PATH."""
    wanted = dict(PROGRAMS)
    if cert_manager:
        wanted[CERT_MANAGER] = "cert-manager"
    found = {program: _find(program, folder, bin_dir) for program, folder in wanted.items()}
    missing = [program for program, path in found.items() if path is None]
    if missing:
        looked = ", ".join(
            f"{how} ({path})" for how, path in _search_dirs(bin_dir, wanted[missing[0]])
        )
        raise ControlPlaneError(
            f"{', '.join(missing)} not found in {looked} or PATH; build them with "
            "`bash ci/install-tools.sh` (needs Go), or pass --bin-dir / set KUBEBUILDER_ASSETS "
            "to a directory that holds them"
        )
    return Binaries(
        str(found["kube-apiserver"]),
        str(found["kube-controller-manager"]),
        str(found["kube-scheduler"]),
        etcd,
        found.get(CERT_MANAGER),
    )


@dataclass
class Pki:
    """The files of the control plane's own PKI (one CA for serving and client certificates)."""

    root: Path

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def ca(self) -> Path:
        return self.path("ca.crt")

    def write(self, address: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ca_key = x509.generate_key("ECDSA", 256)
        ca_cert = x509.self_signed_ca("sandbox-kubernetes-ca", ca_key, CERT_LIFETIME)
        self._save("ca", ca_cert, ca_key)
        api_names = (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
        for name, dns_names in (
            ("apiserver", api_names),
            ("controller-manager-serving", ("localhost",)),
            ("scheduler-serving", ("localhost",)),
        ):
            serving = x509.CertificateRequest(
                common_name=name,
                dns_names=dns_names,
                ip_addresses=(address,),
                usages=("digital signature", "key encipherment", "server auth"),
                duration=CERT_LIFETIME,
            )
            self._leaf(name, serving, ca_cert, ca_key)
        for name, common_name, organization in (
            ("admin", "sandbox-admin", "system:masters"),
            ("controller-manager", "system:kube-controller-manager", ""),
            ("scheduler", "system:kube-scheduler", ""),
        ):
            client = x509.CertificateRequest(
                common_name=common_name,
                subject=(("organizations", organization),) if organization else (),
                usages=("digital signature", "key encipherment", "client auth"),
                duration=CERT_LIFETIME,
            )
            self._leaf(name, client, ca_cert, ca_key)
        signing = x509.generate_key("RSA", 2048)
        self._secret(self.path("service-account.key"), x509.key_pem(signing))
        public = signing.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        self.path("service-account.pub").write_bytes(public)

    def issue_client(self, name: str, common_name: str, organizations: Iterable[str]) -> None:
        """A further client certificate from the same CA (a node's, for example)."""
        ca_cert = x509.load_cert(self.ca.read_bytes())
        ca_key = x509.load_key(self.path("ca.key").read_bytes())
        request = x509.CertificateRequest(
            common_name=common_name,
            subject=tuple(("organizations", org) for org in organizations),
            usages=("digital signature", "key encipherment", "client auth"),
            duration=CERT_LIFETIME,
        )
        self._leaf(name, request, ca_cert, ca_key)

    def _leaf(
        self,
        name: str,
        request: x509.CertificateRequest,
        ca_cert: cx509.Certificate,
        ca_key: x509.PrivateKey,
    ) -> None:
        key = x509.generate_key("ECDSA", 256)
        self._save(name, x509.sign_leaf(request, key, ca_cert, ca_key), key)

    def _save(self, name: str, cert: cx509.Certificate, key: x509.PrivateKey) -> None:
        self.path(f"{name}.crt").write_bytes(x509.cert_pem(cert))
        self._secret(self.path(f"{name}.key"), x509.key_pem(key))

    @staticmethod
    def _secret(path: Path, data: bytes) -> None:
        path.touch(mode=0o600)
        path.write_bytes(data)


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> None:
    """A kubeconfig with one cluster, one user (client certificate) and one current context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "sandbox", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": user}}],
        "current-context": "sandbox",
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None


@dataclass
class ControlPlane:
    """The control plane of one sandbox, on `address` (a loopback address of its own)."""

    root: Path
    address: str
    binaries: Binaries
    on_start: Callable[[str, int], None] = lambda key, pid: None
    on_stop: Callable[[str], None] = lambda key: None
    processes: list[Process] = field(default_factory=list)

    @property
    def pki(self) -> Pki:
        return Pki(self.root / "pki")

    @property
    def server(self) -> str:
        return f"https://{self.address}:{APISERVER_PORT}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    def prepare(self) -> None:
        """PKI and kubeconfigs, made once per state directory and reused after."""
        pki = self.pki
        if not pki.ca.exists():
            pki.write(self.address)
        for name in ("admin", "controller-manager", "scheduler"):
            write_kubeconfig(
                self.root / f"{name}.kubeconfig",
                self.server,
                pki.ca,
                pki.path(f"{name}.crt"),
                pki.path(f"{name}.key"),
                name,
            )

    def _argv(self) -> list[Process]:
        pki, logs, a = self.pki, self.root / "logs", self.address
        etcd_url = f"http://{a}:{ETCD_CLIENT_PORT}"
        peer_url = f"http://{a}:{ETCD_PEER_PORT}"
        etcd = [
            self.binaries.etcd,
            "--name=control-plane",
            f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=control-plane={peer_url}",
            "--listen-metrics-urls=",
            "--log-level=warn",
            "--quota-backend-bytes=1073741824",
        ]
        apiserver = [
            self.binaries.apiserver,
            f"--etcd-servers={etcd_url}",
            f"--bind-address={a}",
            f"--advertise-address={a}",
            # The endpoint reconciler refuses a loopback address; pods reach the API server
            # through KUBERNETES_SERVICE_HOST set to this address, never through the Service.
            "--endpoint-reconciler-type=none",
            f"--secure-port={APISERVER_PORT}",
            f"--cert-dir={self.root / 'apiserver'}",
            f"--tls-cert-file={pki.path('apiserver.crt')}",
            f"--tls-private-key-file={pki.path('apiserver.key')}",
            f"--client-ca-file={pki.ca}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.path('service-account.pub')}",
            f"--service-account-signing-key-file={pki.path('service-account.key')}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=false",
            "--profiling=false",
        ]
        common = [
            f"--bind-address={a}",
            "--leader-elect=false",
            "--profiling=false",
        ]
        controller_manager = [
            self.binaries.controller_manager,
            *common,
            f"--secure-port={CONTROLLER_MANAGER_PORT}",
            f"--tls-cert-file={pki.path('controller-manager-serving.crt')}",
            f"--tls-private-key-file={pki.path('controller-manager-serving.key')}",
            f"--kubeconfig={self.root / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={self.root / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={self.root / 'controller-manager.kubeconfig'}",
            f"--service-account-private-key-file={pki.path('service-account.key')}",
            f"--root-ca-file={pki.ca}",
            f"--cluster-signing-cert-file={pki.ca}",
            f"--cluster-signing-key-file={pki.path('ca.key')}",
            # Every controller runs as the controller manager itself (bound to cluster-admin
            # before it starts): with a ServiceAccount of its own per controller, the first
            # controllers, and the namespaces' default ServiceAccount every pod needs, came about
            # 5 s later on each start (8.2 s against 3.2 s after the first process started).
            "--use-service-account-credentials=false",
        ]
        scheduler = [
            self.binaries.scheduler,
            *common,
            f"--secure-port={SCHEDULER_PORT}",
            f"--tls-cert-file={pki.path('scheduler-serving.crt')}",
            f"--tls-private-key-file={pki.path('scheduler-serving.key')}",
            f"--kubeconfig={self.root / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={self.root / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={self.root / 'scheduler.kubeconfig'}",
        ]
        processes = [
            Process("etcd", etcd, logs / "etcd.log"),
            Process("kube-apiserver", apiserver, logs / "kube-apiserver.log"),
            Process(
                "kube-controller-manager", controller_manager, logs / "kube-controller-manager.log"
            ),
            Process("kube-scheduler", scheduler, logs / "kube-scheduler.log"),
        ]
        if self.binaries.cert_manager:
            cert_manager = [
                self.binaries.cert_manager,
                f"--kubeconfig={self.admin_kubeconfig}",
                "--leader-elect=false",
                f"--metrics-listen-address={a}:{CERT_MANAGER_METRICS_PORT}",
                "--cluster-resource-namespace=kube-system",
            ]
            processes.append(Process("cert-manager", cert_manager, logs / "cert-manager.log"))
        return processes

    def start(self, timeout: float = 90.0) -> None:
        """Start every process in order, each healthy before the next; stop all on failure."""
        self.prepare()
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        try:
            for process in self._argv():
                if process.name == "cert-manager":
                    self._install_crds(deadline)
                if process.name == "kube-controller-manager":
                    self._grant_controller_manager()
                self._spawn(process)
                self._wait_healthy(process, deadline)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, process: Process) -> None:
        with process.log.open("ab") as log:
            process.popen = subprocess.Popen(
                process.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        self.on_start(f"control-plane/{process.name}", process.popen.pid)

    def _health_url(self, process: Process) -> str:
        a = self.address
        return {
            "etcd": f"http://{a}:{ETCD_CLIENT_PORT}/health",
            "kube-apiserver": f"https://{a}:{APISERVER_PORT}/readyz",
            "kube-controller-manager": f"https://{a}:{CONTROLLER_MANAGER_PORT}/healthz",
            "kube-scheduler": f"https://{a}:{SCHEDULER_PORT}/healthz",
            "cert-manager": f"http://{a}:{CERT_MANAGER_METRICS_PORT}/metrics",
        }[process.name]

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request to the API server as the admin; (status, parsed JSON answer)."""
        request = urllib.request.Request(
            self.server + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self._context()) as answer:
                return int(answer.status), json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as err:
            return int(err.code), json.loads(err.read() or b"null")

    def _grant_controller_manager(self) -> None:
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "sandbox:kube-controller-manager"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": "system:kube-controller-manager",
                }
            ],
        }
        self._create(CLUSTER_ROLE_BINDINGS_PATH, binding, "binding the controller manager")

    def _create(self, path: str, body: dict[str, Any], what: str) -> None:
        """POST `body`; one that is already there (a kept state directory) is fine too."""
        status, answer = self.api("POST", path, body)
        if status not in (201, 409):
            raise ControlPlaneError(f"{what} {body['metadata']['name']}: HTTP {status} {answer}")

    def _install_crds(self, deadline: float) -> None:
        """cert-manager's CRDs of its own release, each Established before the controller starts.
        Its deploy/crds files are Helm templates: the lines with template actions are labels."""
        crds_dir = self.binaries.cert_manager_crds
        assert crds_dir is not None
        files = sorted(crds_dir.glob("crd-*.yaml"))
        if not files:
            raise ControlPlaneError(
                f"no cert-manager CRDs in {crds_dir} (build them again: bash ci/install-tools.sh)"
            )
        names = []
        for path in files:
            text = "\n".join(line for line in path.read_text().splitlines() if "{{" not in line)
            for crd in (doc for doc in yaml.safe_load_all(text) if doc):
                crd["metadata"].pop("labels", None)
                self._create(CRD_PATH, crd, "installing CRD")
                names.append(crd["metadata"]["name"])
        for name in names:
            while True:
                _, crd = self.api("GET", f"{CRD_PATH}/{name}")
                conditions = (crd or {}).get("status", {}).get("conditions", [])
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    break
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"CRD {name} was not Established in time")
                time.sleep(0.1)

    def _context(self) -> ssl.SSLContext:
        pki = self.pki
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.load_cert_chain(str(pki.path("admin.crt")), str(pki.path("admin.key")))
        return context

    def _wait_healthy(self, process: Process, deadline: float) -> None:
        url = self._health_url(process)
        assert process.popen is not None
        context = self._context() if url.startswith("https") else None
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = process.popen.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{process.name} exited with {code} while starting; its log "
                    f"({process.log}) ends with:\n{_tail(process.log)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                    if answer.status == 200:
                        return
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}"
            except (OSError, ValueError) as err:
                last = str(getattr(err, "reason", err))
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{process.name} was not healthy at {url} in time (last: {last}); its log "
            f"({process.log}) ends with:\n{_tail(process.log)}"
        )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM in reverse start order, SIGKILL after `grace`; waits for each to exit. The
        Kubernetes components keep no state of their own, and kube-apiserver drains its requests
        for 10 s or more on SIGTERM: they get STATELESS_GRACE; only etcd gets `grace`."""
        for process in reversed(self.processes):
            popen = process.popen
            if popen is None:
                continue
            if popen.poll() is None:
                popen.terminate()
                try:
                    popen.wait(grace if process.name == "etcd" else min(grace, STATELESS_GRACE))
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait()
            self.on_stop(f"control-plane/{process.name}")
        self.processes.clear()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
