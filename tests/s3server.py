"""The S3-compatible server the backup tests start (ci/gobuild/s3server: gofakes3's S3 API over
memory behind its own Signature V4 check, HTTPS with a CA made here), one per test."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from etcd_chart import x509
from etcd_chart.helm import find_tool

ACCESS_KEY_ID = "backup-tests"
SECRET_ACCESS_KEY = "not-a-real-secret-0123456789"


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    ca_file: Path
    process: subprocess.Popen[bytes]

    def env(self, prefix: str = "", secret: str = SECRET_ACCESS_KEY) -> dict[str, str]:
        """The agent's ETCD_AGENT_S3_* settings for this server (path-style addressing)."""
        return {
            "ETCD_AGENT_S3_ENDPOINT": self.endpoint,
            "ETCD_AGENT_S3_BUCKET": self.bucket,
            "ETCD_AGENT_S3_PREFIX": prefix,
            "ETCD_AGENT_S3_REGION": "us-east-1",
            "ETCD_AGENT_S3_PATH_STYLE": "true",
            "ETCD_AGENT_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "ETCD_AGENT_S3_SECRET_ACCESS_KEY": secret,
            "ETCD_AGENT_S3_CA_FILE": str(self.ca_file),
        }

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_s3_server(
    directory: Path, bucket: str = "etcd-backups", host: str = "127.0.0.1"
) -> S3Server:
    """An HTTPS S3 server on `host` (a free port) whose certificate a fresh CA signed."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = x509.generate_key("ECDSA", 256)
    ca = x509.self_signed_ca("s3 test CA", ca_key, timedelta(days=1))
    server_key = x509.generate_key("ECDSA", 256)
    request = x509.CertificateRequest(
        common_name="s3server",
        dns_names=("localhost",),
        ip_addresses=(host,),
        usages=("server auth", "digital signature", "key encipherment"),
        duration=timedelta(days=1),
    )
    server_cert = x509.sign_leaf(request, server_key, ca, ca_key)
    (directory / "ca.crt").write_bytes(x509.cert_pem(ca))
    (directory / "tls.crt").write_bytes(x509.cert_pem(server_cert))
    (directory / "tls.key").write_bytes(x509.key_pem(server_key))
    port_file = directory / "port"
    process = subprocess.Popen(
        [
            find_tool("s3server"),
            "--listen",
            f"{host}:0",
            "--bucket",
            bucket,
            "--access-key",
            f"{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}",
            "--tls-cert",
            str(directory / "tls.crt"),
            "--tls-key",
            str(directory / "tls.key"),
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(directory / "s3server.log", "wb"),  # noqa: SIM115 - the process owns it
    )
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log = (directory / "s3server.log").read_text(errors="replace")
            raise RuntimeError(f"s3server did not start: {log}")
        time.sleep(0.05)
    port = int(port_file.read_text())
    return S3Server(f"https://{host}:{port}", bucket, directory / "ca.crt", process)
