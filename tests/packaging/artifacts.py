"""The release artifacts as the packaging tests make and serve them: a throwaway signing key, the
signed chart package, a chart repository over HTTP, an OCI registry, a Helm home of a test's own."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
CHART_VERSION = str(yaml.safe_load((CHART / "Chart.yaml").read_text())["version"])
KEY_NAME = "etcd-chart test signing key"


def run(
    command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """The command's result, output captured, never raising on a non-zero exit."""
    return subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, env=env, cwd=cwd, check=False, timeout=300,
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def ok(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """The command's stdout; fails the test with its output when it exits non-zero."""
    result = run(command, env=env, cwd=cwd)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@dataclass(frozen=True)
class SigningKey:
    """A GnuPG key made for one test session. Helm reads the legacy keyring formats only."""

    home: Path
    fingerprint: str
    secret_keyring: Path  # `gpg --export-secret-keys`, what `helm package --sign` reads
    public_keyring: Path  # `gpg --export`, what `helm verify` / `--verify` read


def make_signing_key(home: Path, name: str = KEY_NAME) -> SigningKey:
    home.mkdir(mode=0o700, parents=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    # RSA: the OpenPGP code Helm 3 signs and verifies with has no EdDSA.
    parameters = (
        "Key-Type: RSA\nKey-Length: 2048\nKey-Usage: sign\n"
        f"Name-Real: {name}\nName-Email: signing@example.com\nExpire-Date: 0\n"
        "%no-protection\n%commit\n"
    )
    generated = run(["gpg", "--batch", "--gen-key"], env=env, input=parameters)
    assert generated.returncode == 0, generated.stderr
    listing = ok(["gpg", "--batch", "--with-colons", "--list-secret-keys", name], env=env)
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line[:4] == "fpr:")
    secret = home / "secring.gpg"
    public = home / "pubring.gpg"
    secret.write_bytes(
        subprocess.run(
            ["gpg", "--batch", "--export-secret-keys", fingerprint], env=env, check=True,
            capture_output=True,
        ).stdout
    )  # fmt: skip
    public.write_bytes(
        subprocess.run(
            ["gpg", "--batch", "--export", fingerprint], env=env, check=True, capture_output=True
        ).stdout
    )
    # gpg started an agent for this home, which would outlive the tests; Helm reads the exported
    # keyrings itself and needs no agent.
    stopped = run(["gpgconf", "--kill", "gpg-agent"], env=env)
    assert stopped.returncode == 0, stopped.stderr
    return SigningKey(home, fingerprint, secret, public)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """`directory` over plain HTTP on loopback, as a static chart repository host serves it."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def oci_registry(registry_binary: str, root: Path) -> Iterator[str]:
    """The `distribution` registry on loopback, plain HTTP, storage under `root`; yields
    `127.0.0.1:PORT`."""
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = (root / "registry.log").open("w")
    # No telemetry exporter: the registry would otherwise try to reach a local collector.
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    process = subprocess.Popen(  # noqa: S603
        [registry_binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert process.poll() is None, (root / "registry.log").read_text()
            assert time.monotonic() < deadline, "the registry did not answer on /v2/ in 30 s"
            time.sleep(0.2)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def staged_plugin(where: Path) -> Path:
    """The Helm 4 plugin's directory as a release packages it: plugin.yaml and bin/ only (the code
    comes from the Python package of the same version)."""
    staging = where / "staging" / "etcd-chart"
    (staging / "bin").mkdir(parents=True)
    shutil.copy2(REPO / "plugin" / "plugin.yaml", staging)
    shutil.copy2(REPO / "plugin" / "bin" / "etcd-post-render", staging / "bin")
    return staging
