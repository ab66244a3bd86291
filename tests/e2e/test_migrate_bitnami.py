"""Moving from Bitnami (issue 13): a Bitnami etcd values file converts, validates and boots.

tests/data/bitnami/production-values.yaml is written from the Bitnami chart's documented
parameters as a platform team would run it: RBAC with the root password and JWT key Bitnami
generated, tuning through ETCD_* variables, a percentage PodDisruptionBudget, a storage class, a
hard anti-affinity. `etcd-chart migrate-values` turns it into this chart's values; they pass
`etcd-chart validate`, and the sandbox boots them with the Secrets named as the Bitnami release
would have left them. Then the data path README gives: `etcdctl make-mirror` from the old
cluster (here a plain etcd 3.5 standing in for the Bitnami release) into the new one, with the
new release's root user.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_chart.helm import find_tool
from etcd_chart.sandbox.client import Sandbox
from etcd_versions import etcd_program, etcd_release
from membership import pod_names, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BITNAMI = Path(__file__).resolve().parents[1] / "data" / "bitnami" / "production-values.yaml"
ROOT_PASSWORD = "generated-by-bitnami"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etcd_chart.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def bitnami_secrets(work: Path) -> Path:
    """The Secrets the Bitnami release generated (kept before its uninstall, as README says)."""
    key = work / "jwt-token.pem"
    made = subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], capture_output=True)
    assert made.returncode == 0, made.stderr
    registry = {"auths": {"registry.example": {"auth": "dXNlcjpwYXNz"}}}
    objects: list[dict[str, Any]] = [
        secret("etcd", {"etcd-root-password": ROOT_PASSWORD}),
        secret("etcd-jwt-token", {"jwt-token.pem": key.read_text()}),
        {
            **secret("corp-registry", {".dockerconfigjson": json.dumps(registry)}),
            "type": "kubernetes.io/dockerconfigjson",
        },
    ]
    path = work / "secrets.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return path


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def test_bitnami_values_convert_validate_and_boot(
    sandbox: Callable[..., Sandbox], chart_dir: Path, tmp_path: Path
) -> None:
    converted = tmp_path / "values.yaml"
    result = cli("migrate-values", str(BITNAMI), "--output", str(converted))
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    left_out = [line.split(": ")[1] for line in result.stderr.splitlines()[:-1]]
    assert left_out == [
        "extraEnvVars[3]",
        "auth.rbac.rootPassword",
        "auth.token.privateKey.existingSecret",
        "auth.rbac.allowNoneAuthentication",
        "removeMemberOnContainerTermination",
        "podSecurityContext",
        "metrics",
        "disasterRecovery",
    ]
    values = yaml.safe_load(converted.read_text())
    assert values["extraFlags"] == ["--max-request-bytes=10485760"]
    assert values["config"] == {
        "quotaBackendBytes": 4294967296,
        "snapshotCount": 20000,
        "autoCompactionMode": "periodic",
        "autoCompactionRetention": "1",
        "logLevel": "warn",
    }
    assert values["pdb"] == {"maxUnavailable": None, "minAvailable": 2}
    assert values["image"]["tag"] == "v3.5.16"
    validated = cli("validate", str(converted))
    assert (validated.returncode, validated.stdout) == (0, f"{converted}: valid\n")

    # The sandbox's Nodes carry no `example.com/pool` label or taint: the pool placement is off.
    # It runs the exact etcd release of an image tag, so this machine's 3.5 stands in for 3.5.16.
    five = etcd_release("3.5")
    sb = sandbox(
        str(chart_dir),
        "-f",
        str(converted),
        "--set",
        f"nodeSelector=null,tolerations=null,priorityClassName=,image.tag=v{five}",
        "--storage-class",
        "fast-ssd",
        "--objects",
        str(bitnami_secrets(tmp_path)),
        timeout=300,
    )
    root = f"--user=root:{ROOT_PASSWORD}"

    def voters() -> list[str]:
        listed = sb.etcdctl("etcd-0", root, "member", "list", "-w", "json")
        if listed.returncode != 0:
            return []
        found = json.loads(listed.stdout)["members"]
        return sorted(m["name"] for m in found if m.get("clientURLs") and not m.get("isLearner"))

    wait_for(lambda: sb.status()["ready"] and voters() == pod_names(3), "3 voting members")
    health = sb.etcdctl("etcd-0", root, "endpoint", "health", "--cluster", "-w", "json")
    assert [h["health"] for h in json.loads(health.stdout)] == [True] * 3, health.stderr
    status = sb.etcdctl("etcd-0", root, "endpoint", "status", "-w", "json")
    assert json.loads(status.stdout)[0]["Status"]["version"] == five
    assert sb.etcdctl("etcd-1", root, "put", "/moved/from", "bitnami").stdout == "OK\n"
    read = sb.etcdctl("etcd-2", root, "get", "/moved/from", "--print-value-only")
    assert (read.returncode, read.stdout) == (0, "bitnami\n"), read.stderr
    anonymous = sb.etcdctl("etcd-0", "get", "/moved/from")
    assert anonymous.returncode != 0 and "user name is empty" in anonymous.stderr
    kubeconfig = f"--kubeconfig={sb.state_dir / 'kubeconfig'}"
    config = subprocess.run(
        [find_tool("kubectl"), kubeconfig, "get", "configmap", "etcd-config", "-o",
         "jsonpath={.data.etcd\\.conf\\.json}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    settings = json.loads(config)
    assert settings["x-extra-flags"] == values["extraFlags"]
    assert settings["auth-token"].startswith("jwt,priv-key=")
    assert settings["log-level"] == "warn"
    assert (settings["quota-backend-bytes"], settings["snapshot-count"]) == (4294967296, 20000)

    # The data path: mirror the old cluster's keys into the new release, as README says.
    target = next(p["client_url"] for p in sb.status()["pods"] if p["name"] == "etcd-0")
    with old_cluster(tmp_path / "old") as source:
        etcdctl = etcd_program(etcd_release("3.5"), "etcdctl")
        for i in range(50):
            put = [etcdctl, f"--endpoints={source}", "put", f"/app/{i:02d}", f"value {i}"]
            assert subprocess.run(put, capture_output=True).returncode == 0
        log = (tmp_path / "mirror.log").open("wb")
        mirror = subprocess.Popen(
            [etcdctl, f"--endpoints={source}", "make-mirror", "--prefix=/app/",
             f"--dest-user=root:{ROOT_PASSWORD}", target],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:

            def mirrored() -> int:
                keys = sb.etcdctl("etcd-2", root, "get", "/app/", "--prefix", "--keys-only")
                return len(keys.stdout.split()) if keys.returncode == 0 else 0

            wait_for(lambda: mirrored() == 50, "the 50 keys to be mirrored")
            late = [etcdctl, f"--endpoints={source}", "put", "/app/late", "written during it"]
            assert subprocess.run(late, capture_output=True).returncode == 0
            wait_for(lambda: mirrored() == 51, "a write made while mirroring to follow")
        finally:
            mirror.kill()
            mirror.wait(timeout=10)
            log.close()
    got = sb.etcdctl("etcd-1", root, "get", "/app/07", "--print-value-only")
    assert (got.returncode, got.stdout) == (0, "value 7\n"), got.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def old_cluster(data: Path) -> Iterator[str]:
    """A one-member etcd 3.5 on loopback, the cluster being moved away from; always stopped."""
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [etcd_program(etcd_release("3.5"), "etcd"), "--name=old", f"--data-dir={data}",
         f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
         f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
         f"--initial-cluster=old={peer}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        etcdctl = etcd_program(etcd_release("3.5"), "etcdctl")
        health = [etcdctl, f"--endpoints={client}", "endpoint", "health"]
        deadline = time.monotonic() + 30
        while subprocess.run(health, capture_output=True).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline, (
                "the old etcd did not start"
            )
            time.sleep(0.2)
        yield client
    finally:
        process.kill()
        process.wait(timeout=10)
