"""Talking to the sandbox daemon, and `Sandbox`: the small Python API the tests use.

`Sandbox(state_dir)` runs `etcd-chart sandbox ...` in a subprocess for every call, so the tests
drive exactly what a user types.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from etcd_chart.sandbox.state import (
    ProcessRecord,
    StateDir,
    alive,
    kill_recorded,
    process_start_time,
    read_json,
)


class ControlError(Exception):
    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def request(
    state: StateDir, payload: dict[str, Any], timeout: float | None = None
) -> dict[str, Any]:
    """Send one request to the daemon and return its answer (raises ControlError on failure)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(state.socket))
            conn.sendall(json.dumps(payload).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError) as err:
        raise ControlError(f"no sandbox is running in {state.root}", 2) from err
    except OSError as err:
        raise ControlError(f"sandbox in {state.root}: {err}", 2) from err
    if not data:
        raise ControlError(f"sandbox in {state.root}: the daemon closed the connection", 2)
    answer: dict[str, Any] = json.loads(data)
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "failed")), int(answer.get("code", 2)))
    return answer


def daemon_pid(state: StateDir) -> int | None:
    try:
        return int(state.daemon_pid.read_text().strip())
    except (OSError, ValueError):
        return None


def running(state: StateDir) -> bool:
    try:
        request(state, {"op": "ping"}, timeout=5)
    except ControlError:
        return False
    return True


def has_leftovers(state: StateDir) -> bool:
    """Anything a previous daemon of this state dir left behind (it died, or `down` was not run)."""
    return state.daemon_pid.exists() or bool(ProcessRecord(state.processes).entries())


def spawn_daemon(
    state: StateDir,
    namespace: str,
    subnet: str | None,
    extra: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start the daemon (etcd_chart.sandbox.cluster) detached, in its own session;
    `wait_daemon` waits until it answers."""
    state.root.mkdir(parents=True, exist_ok=True)
    error_file = state.root / "daemon.error"
    with contextlib.suppress(FileNotFoundError):
        error_file.unlink()
    command = [
        sys.executable,
        "-m",
        "etcd_chart.sandbox.cluster",
        "--state-dir",
        str(state.root),
        "--namespace",
        namespace,
        *(extra or []),
    ]
    if subnet:
        command += ["--subnet", subnet]
    with open(state.daemon_log, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc


def wait_daemon(state: StateDir, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    error_file = state.root / "daemon.error"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            problem = read_json(error_file, {}) or {}
            message = (
                problem.get("error")
                or f"the sandbox daemon exited with {proc.returncode}; see {state.daemon_log}"
            )
            raise ControlError(str(message), int(problem.get("code", 2)))
        if state.daemon_pid.exists() and running(state):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 9)
    raise ControlError(
        f"the sandbox daemon did not answer within {timeout:.0f} s; see {state.daemon_log}", 2
    )


def stop(state: StateDir, purge: bool = False) -> int:
    """Stop everything the sandbox in `state` started, whether or not its daemon still runs;
    returns how many container processes were running."""
    from etcd_chart.sandbox.serving import remove_leftovers

    pid = daemon_pid(state)
    start = process_start_time(pid) if pid else None
    stopped = 0
    with contextlib.suppress(ControlError):
        stopped = int(request(state, {"op": "shutdown"}, timeout=10).get("processes", 0))
    if pid and start:
        deadline = time.monotonic() + 40
        while alive(pid, start) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
    stopped += len(kill_recorded(ProcessRecord(state.processes), grace=5))
    remove_leftovers(state)
    if purge:
        with contextlib.suppress(FileNotFoundError):
            state.socket.unlink()
        shutil.rmtree(state.root, ignore_errors=True)
    return stopped


class SandboxCommandError(RuntimeError):
    def __init__(self, result: subprocess.CompletedProcess[str]):
        super().__init__(
            f"{' '.join(result.args[3:])} exited {result.returncode}:\n{result.stderr}"
        )
        self.result = result


class Sandbox:
    """One sandbox state dir, driven through the command line."""

    def __init__(self, state_dir: str | Path, env: dict[str, str] | None = None):
        self.state_dir = Path(state_dir)
        self.env = env

    def _run(
        self, *args: str, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "etcd_chart.cli", "sandbox", *args]
        result = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise SandboxCommandError(result)
        return result

    def _state(self) -> list[str]:
        return ["--state-dir", str(self.state_dir)]

    def up(
        self, *render_args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return self._run("up", *render_args, *self._state(), "--timeout", str(timeout), check=check)

    def upgrade(
        self, *render_args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return self._run(
            "upgrade", *render_args, *self._state(), "--timeout", str(timeout), check=check
        )

    def kill(self, pod: str, signal: str = "KILL", container: str | None = None) -> None:
        extra = ["-c", container] if container else []
        self._run("kill", pod, "--signal", signal, *extra, *self._state())

    def restart(self, pod: str) -> None:
        self._run("restart", pod, *self._state())

    def lose_volume(self, pod: str, claim: str | None = None) -> None:
        only = ["--claim", claim] if claim else []
        self._run("lose-volume", pod, *only, *self._state())

    def stop(self, pod: str) -> None:
        self._run("stop", pod, *self._state())

    def start(self, pod: str) -> None:
        self._run("start", pod, *self._state())

    def stop_all(self) -> None:
        self._run("stop-all", *self._state())

    def start_all(self) -> None:
        self._run("start-all", *self._state())

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self._run("status", *self._state()).stdout)
        return result

    def wait_ready(self, timeout: float = 120) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(
            self._run("wait", "--timeout", str(timeout), *self._state()).stdout
        )
        return result

    def logs(self, pod: str, container: str | None = None) -> str:
        extra = ["-c", container] if container else []
        return self._run("logs", pod, *extra, *self._state()).stdout

    def etcdctl(
        self, pod: str, *args: str, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self._run("etcdctl", pod, *self._state(), "--", *args, check=check, timeout=timeout)

    def down(self, purge: bool = False) -> subprocess.CompletedProcess[str]:
        return self._run("down", *self._state(), *(["--purge"] if purge else []), check=False)
