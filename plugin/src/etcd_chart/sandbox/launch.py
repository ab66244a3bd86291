"""Container launcher, run as
`unshare --mount --uts --propagation private python -m etcd_chart.sandbox.launch SPEC.json`.

Runs as root inside the container's fresh mount (and UTS) namespace, then becomes the program:

1. bind-mounts the sandbox-wide hosts file over `/etc/hosts` and the sandbox's resolv.conf
   (no name server) over `/etc/resolv.conf`, both read-only;
2. bind-mounts every volume at its `mountPath` (`readOnly` remounts it read-only); the mount
   points were created by the daemon beforehand;
3. with `readOnlyRootFilesystem`, remounts `/` read-only in this namespace only;
4. sets the hostname to the pod name, changes to `workingDir`;
5. drops to `runAsUser`/`runAsGroup` with the pod's supplemental groups and `fsGroup`,
   sets no_new_privs when `allowPrivilegeEscalation: false`;
6. execs the program with exactly the container's environment.

Any failure is written to stderr (the container's log) with exit code 127, like a runtime that
cannot start a container.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
from collections.abc import Sequence


def launcher_argv(spec_file: str) -> list[str]:
    """The command line that runs a container from its launch spec (this module's docstring)."""
    return [
        "unshare",
        "--mount",
        "--uts",
        "--propagation",
        "private",
        "--",
        sys.executable,
        "-m",
        "etcd_chart.sandbox.launch",
        spec_file,
    ]


MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, flags: int) -> None:
    result = _libc.mount(
        source.encode() if source is not None else None, target.encode(), None, flags, None
    )
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} -> {target}: {os.strerror(errno)}")


def bind(source: str, target: str, read_only: bool) -> None:
    _mount(source, target, MS_BIND | MS_REC)
    if read_only:
        _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)


def _ensure_target(source: str, target: str) -> None:
    """The daemon creates mount points beforehand; another sandbox's `down` may have removed one."""
    if os.path.lexists(target):
        return
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()


def _in_own_mount_namespace() -> bool:
    try:
        return os.readlink("/proc/self/ns/mnt") != os.readlink(f"/proc/{os.getppid()}/ns/mnt")
    except OSError:
        return False


def apply(spec: dict[str, object]) -> None:
    if not _in_own_mount_namespace():
        # Never mount over this machine's own /etc/hosts or paths.
        raise OSError(1, "refusing to run outside a private mount namespace (use unshare --mount)")
    hosts = str(spec.get("hosts_file") or "")
    if hosts:
        bind(hosts, "/etc/hosts", True)
        resolv = os.path.join(os.path.dirname(hosts), "resolv.conf")
        if os.path.exists(resolv) and os.path.exists("/etc/resolv.conf"):
            bind(resolv, "/etc/resolv.conf", True)
    for mount in spec.get("mounts") or []:  # type: ignore[attr-defined]
        _ensure_target(str(mount["source"]), str(mount["target"]))
        bind(str(mount["source"]), str(mount["target"]), bool(mount.get("read_only")))
    if spec.get("read_only_root"):
        _mount(None, "/", MS_BIND | MS_REMOUNT | MS_RDONLY)
    hostname = spec.get("hostname")
    if hostname:
        socket.sethostname(str(hostname))
    os.chdir(str(spec.get("cwd") or "/"))
    groups = [int(g) for g in spec.get("groups") or []]  # type: ignore[attr-defined]
    gid = spec.get("gid")
    uid = spec.get("uid")
    if uid is not None or gid is not None or groups:
        os.setgroups(groups)
    if gid is not None:
        os.setgid(int(gid))  # type: ignore[call-overload]
    if uid is not None:
        os.setuid(int(uid))  # type: ignore[call-overload]
    if spec.get("no_new_privs") and _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m etcd_chart.sandbox.launch SPEC.json", file=sys.stderr)
        return 2
    try:
        with open(args[0]) as handle:
            spec = json.load(handle)
        apply(spec)
        program = [str(a) for a in spec["argv"]]
        env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        os.execve(program[0], program, env)
    except OSError as err:
        print(f"sandbox: cannot start container: {err}", file=sys.stderr, flush=True)
        return 127
    return 127  # not reached: execve replaced this process


if __name__ == "__main__":
    sys.exit(main())
