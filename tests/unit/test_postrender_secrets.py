"""TLS Secrets made beforehand (`tls.source: existingSecrets`), checked in a live cluster.

The cluster is the real kube-apiserver of the `control_plane` fixture, each test in a namespace
of its own; the Secrets are real certificates from `etcd-chart pki` (`pki.ensure_pki`,
`secrets.yaml`) for that namespace, and a second, unrelated PKI of the same names plays the CA
that does not match.
"""

from __future__ import annotations

import base64
import copy
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_chart import pki, x509
from etcd_chart.postrender.cluster import Cluster
from etcd_chart.postrender.core import Options, Outcome, post_render
from etcd_chart.sandbox.controlplane import ControlPlane
from realapi import apply, write_kubeconfig

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "chart" / "ci" / "existing-secrets-values.yaml"
SOURCE = "etcd/templates/statefulset.yaml"
ISSUED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CHECKED = ISSUED + timedelta(days=1)
ROLES = ("server", "peer", "client", "agent")


def pki_command(namespace: str, members: int) -> str:
    return (
        f"etcd-chart pki --out DIR --name etcd --namespace {namespace} --max-members {members} "
        "--format secrets"
    )


def helm_template(helm3: str, namespace: str, *flags: str) -> str:
    command = [helm3, "template", "etcd", str(REPO / "chart"), "-n", namespace, *flags]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def stream(helm3: str, ns: str) -> str:
    return helm_template(helm3, ns, "-f", str(VALUES))


def place(stream: str, role: str) -> str:
    """Where the StatefulSet names the Secret of `role` (its volume `tls-<role>`)."""
    sts = next(b for b in yaml.safe_load_all(stream) if b and b["kind"] == "StatefulSet")
    volumes = [v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]]
    return (
        f"{SOURCE}: StatefulSet/etcd: spec.template.spec.volumes[{volumes.index(f'tls-{role}')}]"
        ".secret.secretName"
    )


def missing_secret(stream: str, role: str, namespace: str) -> str:
    return (
        f"{place(stream, role)}: Secret etcd-{role}-tls does not exist in namespace {namespace}, "
        "so the member pods cannot start (create it before installing, e.g. with "
        f"`{pki_command(namespace, 9)}` and `kubectl apply -f DIR/secrets.yaml`, or let "
        "cert-manager issue the certificates (tls.source: cert-manager))"
    )


def make_pki(
    out: Path, namespace: str, now: datetime | None = ISSUED, **options: Any
) -> dict[str, dict[str, Any]]:
    """The Secrets `etcd-chart pki --format secrets` writes, by name."""
    pki.ensure_pki(pki.PkiOptions(out=out, namespace=namespace, format="secrets", **options), now)
    bodies = [b for b in yaml.safe_load_all((out / pki.SECRETS_FILE).read_text()) if b]
    return {b["metadata"]["name"]: b for b in bodies}


@pytest.fixture
def pkis(ns: str, tmp_path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """For the test's namespace: the certificates name its member hosts."""
    root = tmp_path / "pkis"
    return {
        "good": make_pki(root / "good", ns),
        "other": make_pki(root / "other", ns),
        "few": make_pki(root / "few", ns, max_members=3),
        "short": make_pki(root / "short", ns, days=30),
    }


def secrets_of(pkis: dict[str, dict[str, dict[str, Any]]], which: str) -> dict[str, Any]:
    return copy.deepcopy(pkis[which])


def decoded(secret: dict[str, Any], key: str) -> bytes:
    return base64.b64decode(secret["data"][key])


def ca_of(secret: dict[str, Any]) -> str:
    cert = x509.load_cert(decoded(secret, "ca.crt"))
    return f"CN {x509.common_name_of(cert)}, SHA-256 {x509.fingerprint(cert)[:16]}"


def seed(plane: ControlPlane, namespace: str, secrets: dict[str, Any]) -> None:
    apply(plane, namespace, list(secrets.values()))


def render(stream: str, cluster: Cluster, namespace: str, now: datetime = CHECKED) -> Outcome:
    return post_render(stream, Options(namespace=namespace, now=now), cluster)


def test_good_secrets_pass_and_leave_the_stream_as_offline(
    control_plane: ControlPlane, ns: str, cluster: Cluster, stream: str, pkis: Any
) -> None:
    seed(control_plane, ns, secrets_of(pkis, "good"))
    outcome = render(stream, cluster, ns)
    assert outcome.report.lines() == []
    assert outcome.decisions == {"etcd": ("new", "cluster")}
    offline = post_render(stream, Options(namespace=ns))
    assert offline.report.lines() == []
    assert outcome.output == offline.output


def test_missing_secret(
    control_plane: ControlPlane, ns: str, cluster: Cluster, stream: str, pkis: Any
) -> None:
    secrets = secrets_of(pkis, "good")
    del secrets["etcd-peer-tls"]
    seed(control_plane, ns, secrets)
    outcome = render(stream, cluster, ns)
    assert outcome.output == ""
    assert outcome.report.lines() == [missing_secret(stream, "peer", ns)]


@pytest.mark.parametrize(
    ("key", "what"),
    [
        ("tls.crt", "the PEM certificate"),
        ("tls.key", "the certificate's unencrypted PEM private key"),
        ("ca.crt", "the PEM certificate of the CA that signed tls.crt"),
    ],
)
def test_missing_key(
    control_plane: ControlPlane,
    ns: str,
    cluster: Cluster,
    stream: str,
    pkis: Any,
    key: str,
    what: str,
) -> None:
    """The API server refuses a `kubernetes.io/tls` Secret without tls.crt or tls.key, so those
    two cases are seeded as `Opaque`; the check reads the keys of either type alike."""
    secrets = secrets_of(pkis, "good")
    del secrets["etcd-server-tls"]["data"][key]
    if key != "ca.crt":
        secrets["etcd-server-tls"]["type"] = "Opaque"
    seed(control_plane, ns, secrets)
    assert render(stream, cluster, ns).report.lines() == [
        f"{place(stream, 'server')}: Secret etcd-server-tls has no key {key} (add {what} as "
        f"{key}; each TLS Secret needs tls.crt, tls.key and ca.crt, as `etcd-chart pki --format "
        "secrets` writes them)"
    ]


def test_unreadable_certificate_and_foreign_key(
    control_plane: ControlPlane, ns: str, cluster: Cluster, stream: str, pkis: Any
) -> None:
    secrets = secrets_of(pkis, "good")
    server = secrets["etcd-server-tls"]["data"]
    server["tls.crt"] = base64.b64encode(b"not a certificate\n").decode()
    secrets["etcd-peer-tls"]["data"]["tls.key"] = secrets["etcd-client-tls"]["data"]["tls.key"]
    seed(control_plane, ns, secrets)
    lines = render(stream, cluster, ns).report.lines()
    assert lines == [
        f"{place(stream, 'server')}: Secret etcd-server-tls key tls.crt holds no PEM certificate "
        "(no BEGIN CERTIFICATE line) (put the PEM certificate there)",
        f"{place(stream, 'peer')}: Secret etcd-peer-tls: tls.key is not the private key of "
        "tls.crt (CN etcd-peer) (put the key tls.crt was issued for into tls.key, or issue a new "
        "certificate for this key)",
    ]
    client_key = decoded(secrets["etcd-client-tls"], "tls.key").decode()
    assert not any(client_key.splitlines()[1] in line for line in lines)


def test_ca_that_does_not_match(
    control_plane: ControlPlane, ns: str, cluster: Cluster, stream: str, pkis: Any
) -> None:
    """The peer Secret from another PKI; the client Secret with the other PKI's ca.crt."""
    secrets = secrets_of(pkis, "good")
    other = secrets_of(pkis, "other")
    secrets["etcd-peer-tls"] = other["etcd-peer-tls"]
    secrets["etcd-client-tls"]["data"]["ca.crt"] = other["etcd-client-tls"]["data"]["ca.crt"]
    seed(control_plane, ns, secrets)
    good_ca, other_ca = ca_of(pkis["good"]["etcd-server-tls"]), ca_of(other["etcd-peer-tls"])
    assert good_ca != other_ca and good_ca.startswith("CN etcd-ca, ")
    assert render(stream, cluster, ns).report.lines() == [
        f"{place(stream, 'client')}: Secret etcd-client-tls: tls.crt (CN root) is not signed by "
        f"the CA in ca.crt ({other_ca}) (put the CA that signed tls.crt into ca.crt, or issue "
        "tls.crt from the CA in ca.crt (a CA of the same name from another `etcd-chart pki` run "
        "is another CA))",
        f"{place(stream, 'peer')}: Secret etcd-peer-tls is signed by another CA ({other_ca}) "
        f"than Secret etcd-server-tls ({good_ca}); the members, etcdctl and the member agent of "
        "StatefulSet/etcd check each other against one CA (issue every certificate of the member "
        "set from one CA and put that CA into every Secret's ca.crt, e.g. from one `etcd-chart "
        "pki` directory (a CA of the same name from another run is another CA))",
    ]


def test_too_few_names(
    control_plane: ControlPlane, ns: str, cluster: Cluster, helm3: str, pkis: Any
) -> None:
    """Certificates for 3 members; the StatefulSet runs 5 (and may grow to 5)."""
    stream = helm_template(
        helm3, ns, "-f", str(VALUES), "--set", "replicas=5", "--set", "tls.maxMembers=5"
    )
    seed(control_plane, ns, secrets_of(pkis, "few"))
    hosts = (
        f"etcd-3.etcd-headless.{ns}.svc.cluster.local, etcd-4.etcd-headless.{ns}.svc.cluster.local"
    )
    fix = (
        f"issue it again for every member, e.g. `{pki_command(ns, 5)} --force-renew` with DIR "
        "holding its CA (or name a wildcard for the headless Service domain); set "
        "tls.maxMembers to the largest member count it may grow to (the chart writes it into the "
        "StatefulSet annotation etcd-chart/max-members)"
    )
    assert render(stream, cluster, ns).report.lines() == [
        f"{place(stream, role)}: the certificate in Secret etcd-{role}-tls, used by "
        f"StatefulSet/etcd, does not cover {hosts} (members up to 5) ({fix})"
        for role in ("server", "peer")
    ]


@pytest.mark.parametrize(
    ("days", "state"),
    [
        (25, "expires on 2026-01-31 12:00:00 UTC, within 7 days"),
        (31, "expired on 2026-01-31 12:00:00 UTC"),
    ],
)
def test_certificates_about_to_expire(
    control_plane: ControlPlane,
    ns: str,
    cluster: Cluster,
    stream: str,
    pkis: Any,
    days: int,
    state: str,
) -> None:
    """Leaves of 30 days, checked 25 and 31 days after they were issued; the CA is good."""
    seed(control_plane, ns, secrets_of(pkis, "short"))
    names = {"server": "CN etcd-server", "peer": "CN etcd-peer", "client": "CN root"}
    fix = (
        f"issue it again and update the Secret, e.g. `{pki_command(ns, 9)} --force-renew` with "
        "DIR holding its CA, then `kubectl apply -f DIR/secrets.yaml`"
    )
    assert render(stream, cluster, ns, ISSUED + timedelta(days=days)).report.lines() == [
        f"{place(stream, role)}: Secret etcd-{role}-tls: the certificate in tls.crt "
        f"({names.get(role, 'no CN')}) {state} ({fix})"
        for role in ROLES
    ]


def test_agent_certificate_with_a_common_name(
    control_plane: ControlPlane, ns: str, cluster: Cluster, stream: str, pkis: Any
) -> None:
    """The client certificate (CN root) reused for the member agent."""
    secrets = secrets_of(pkis, "good")
    secrets["etcd-agent-tls"]["data"] = secrets["etcd-client-tls"]["data"]
    seed(control_plane, ns, secrets)
    assert render(stream, cluster, ns).report.lines() == [
        f"{place(stream, 'agent')}: Secret etcd-agent-tls: the member agent's certificate "
        "(tls.crt) has CN 'root'; etcd's JSON gateway refuses client certificates with a CN once "
        "auth is on, so the agent could not log in (issue the agent certificate without a common "
        "name, with a URI name only, as `etcd-chart pki` and the chart's cert-manager "
        "Certificate do)"
    ]


def test_secret_the_release_renders_is_read_from_the_stream(
    control_plane: ControlPlane, ns: str, cluster: Cluster, stream: str, pkis: Any
) -> None:
    """Not in the cluster yet, but in the stream (as text under stringData), without ca.crt."""
    secrets = secrets_of(pkis, "good")
    agent = secrets.pop("etcd-agent-tls")
    seed(control_plane, ns, secrets)
    rendered = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "etcd-agent-tls", "namespace": ns},
        "stringData": {key: decoded(agent, key).decode() for key in ("tls.crt", "tls.key")},
    }
    text = stream + "---\n# Source: etcd/templates/extra.yaml\n" + yaml.safe_dump(rendered)
    assert render(text, cluster, ns).report.lines() == [
        f"{place(stream, 'agent')}: Secret etcd-agent-tls has no key ca.crt (add the PEM "
        "certificate of the CA that signed tls.crt as ca.crt; each TLS Secret needs tls.crt, "
        "tls.key and ca.crt, as `etcd-chart pki --format secrets` writes them)"
    ]


def test_secrets_cert_manager_issues_are_not_read(ns: str, cluster: Cluster, helm3: str) -> None:
    stream = helm_template(helm3, ns, "--set", "tls.enabled=true")
    assert "kind: Certificate" in stream
    assert render(stream, cluster, ns).report.lines() == []


def test_offline_run_does_not_load_cryptography(helm3: str) -> None:
    stream = helm_template(helm3, "db", "-f", str(VALUES))
    code = (
        "import sys\n"
        "from etcd_chart.postrender.core import Options, post_render\n"
        "outcome = post_render(sys.stdin.read(), Options(namespace='db'))\n"
        "assert outcome.ok, outcome.report.lines()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input=stream, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "[]\n", "")


def test_cli_exit_1_with_the_message_on_stderr(
    control_plane: ControlPlane, ns: str, stream: str, tmp_path: Path
) -> None:
    """Certificates issued now, since the command checks them against the current time."""
    secrets = make_pki(tmp_path / "pki", ns, now=None)
    apply(control_plane, ns, [body for name, body in secrets.items() if name != "etcd-agent-tls"])
    kubeconfig = write_kubeconfig(control_plane, tmp_path / "kubeconfig", ns)
    result = subprocess.run(
        [sys.executable, "-m", "etcd_chart.cli", "post-render", "--namespace", ns],
        input=stream,
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig), "ETCD_CHART_NO_TTY": "1"},
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (1, "")
    read = (
        f"etcd-chart post-render: read the cluster at {control_plane.server} "
        f"(context test, kubeconfig {kubeconfig} (KUBECONFIG))\n"
    )
    assert result.stderr == read + missing_secret(stream, "agent", ns) + "\n"
