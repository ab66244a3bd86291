"""Finding what a sandbox left behind: processes that carry its state dir or its API address in
their environment, and routes of its subnet."""

from __future__ import annotations

import json
import os
from pathlib import Path

from etcd_chart.sandbox.network import subnet_routes


def stray_processes(state_dir: Path, subnet: str | None) -> list[str]:
    """Processes that belong to the sandbox in `state_dir` (its subnet's API address in the env)."""
    needles = [str(state_dir).encode()]
    if subnet:
        needles.append(f"KUBERNETES_SERVICE_HOST={subnet}.1\0".encode())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if not cmdline:
            continue
        if any(n in cmdline or n in environ + b"\0" for n in needles):
            text = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {text}")
    return found


def stray_routes(subnet: str | None) -> list[str]:
    """Routes the sandbox added for its pod addresses that are still in the local table."""
    return [f"route {address}" for address in subnet_routes(subnet)] if subnet else []


def leftovers(state_dir: Path, subnet: str | None) -> list[str]:
    """Everything of the sandbox in `state_dir` that outlived its `down`."""
    return stray_processes(state_dir, subnet) + stray_routes(subnet)


def assert_no_stray_processes(state_dir: Path, subnet: str | None = None) -> None:
    left = leftovers(state_dir, subnet)
    assert left == [], f"processes of the sandbox in {state_dir} are still running:\n" + "\n".join(
        left
    )


def subnet_of(state_dir: Path) -> str | None:
    try:
        return str(json.loads((state_dir / "network.json").read_text())["subnet"])
    except (OSError, ValueError, KeyError):
        return None
