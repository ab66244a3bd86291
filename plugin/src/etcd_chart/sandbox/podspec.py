"""From a pod template to what the sandbox launches: programs, environment, volumes, probes.

Everything here is a pure function of the template and a `PodContext` (the pod's identity and a
way to look objects up), so that it can be unit-tested; writing the volume files is the only
side effect, in `materialize_volumes`.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from etcd_chart.helm import ToolMissing
from etcd_chart.sandbox.binaries import Tools, UnknownVersion

Lookup = Callable[[str, str, str], "dict[str, Any] | None"]  # (kind, namespace, name) -> object

ETCD_PROGRAMS = ("etcd", "etcdctl", "etcdutl")
PYTHON_REPOSITORIES = ("python", "library/python", "docker.io/library/python")
PYTHON_COMMANDS = (
    "python",
    "python3",
    "/usr/local/bin/python",
    "/usr/local/bin/python3",
    "/usr/bin/python3",
)
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


class Unsupported(ValueError):
    """The manifest asks for something the sandbox cannot emulate; the message names where."""


class MissingObject(ValueError):
    """A ConfigMap or Secret a pod needs does not exist (yet)."""


# ---------------------------------------------------------------------------------------------
# quantities, expansion


_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "u": Decimal("0.000001"),
    "n": Decimal("0.000000001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes resource quantity (`500m`, `2`, `1Gi`, `1e3`) as a number."""
    text = str(value).strip()
    match = _QUANTITY_RE.match(text)
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation as err:
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from err


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: `$$` is a literal `$`, undefined references stay as is."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env[name] if name in env else text[i : end + 1])
                    i = end + 1
                    continue
        out.append(char)
        i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# images


def image_repository(image: str) -> str:
    """`gcr.io/etcd-development/etcd:v3.6.0@sha256:...` -> `gcr.io/etcd-development/etcd`."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def image_kind(image: str) -> str | None:
    repository = image_repository(image)
    if repository == "etcd" or repository.endswith("/etcd"):
        return "etcd"
    if repository in PYTHON_REPOSITORIES:
        return "python"
    return None


def _traversable(path: str, uid: int, gids: set[int], need: int) -> bool:
    """Would `uid` (with groups `gids`) get `need` (an os.R_OK/X_OK mask) on `path` and search
    permission on every directory above it?"""
    if uid == 0:
        return True
    real = os.path.realpath(path)
    parts = Path(real).parents
    checks: list[tuple[str, int]] = [(str(p), os.X_OK) for p in reversed(list(parts))]
    checks.append((real, need))
    for item, mask in checks:
        try:
            info = os.stat(item)
        except OSError:
            return False
        if info.st_uid == uid:
            bits = (info.st_mode >> 6) & 7
        elif info.st_gid in gids:
            bits = (info.st_mode >> 3) & 7
        else:
            bits = info.st_mode & 7
        if bits & mask != mask:
            return False
    return True


def python_for(uid: int | None, gids: set[int]) -> str:
    """This interpreter, or a system one when this one is not reachable by the container's user."""
    candidates = [sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"]
    for candidate in candidates:
        if os.path.exists(candidate) and _traversable(candidate, uid or 0, gids, os.X_OK):
            return candidate
    raise Unsupported(
        f"no Python interpreter on this machine can be run by uid {uid} "
        f"(tried {', '.join(candidates)})"
    )


# Where the etcd binaries appear inside a container: bind-mounted there, so that a non-root
# container user can run them wherever this machine keeps them (even below a 0700 directory).
TOOLS_MOUNT = "/run/etcd-sandbox/bin"


def tool_mount(binary: str) -> tuple[str, Mount]:
    """The in-container path of a host binary, and the read-only bind mount that puts it there."""
    target = f"{TOOLS_MOUNT}/{os.path.basename(binary)}"
    return target, Mount(os.path.realpath(binary), target, True)


def program_argv(
    where: str,
    image: str,
    command: list[str],
    args: list[str],
    tools: Tools,
    uid: int | None = None,
    gids: set[int] | None = None,
) -> list[str]:
    """The local argv for a container of `image` (command/args already expanded).

    Raises Unsupported for an image or program that has no local equivalent (an etcd image whose
    tag names no version included), ToolMissing when the version's etcd binaries are not here.
    """
    kind = image_kind(image)
    if kind is None:
        raise Unsupported(
            f"{where}: image {image!r} has no local program in the sandbox (it runs etcd images "
            "such as gcr.io/etcd-development/etcd and Python images such as python:3.12)"
        )
    if kind == "etcd":
        argv = list(command) + list(args) if command else ["etcd", *args]
        program = os.path.basename(argv[0])
        if program not in ETCD_PROGRAMS or argv[0] not in (program, f"/usr/local/bin/{program}"):
            raise Unsupported(
                f"{where}: the etcd image has no shell or other programs; the sandbox runs only "
                f"{', '.join(ETCD_PROGRAMS)} from it, not {argv[0]!r}"
            )
        try:
            return [tools.etcd(program, image, where), *argv[1:]]
        except UnknownVersion as err:
            raise Unsupported(str(err)) from err
    argv = list(command) + list(args) if command else (list(args) or ["python3"])
    if argv[0] not in PYTHON_COMMANDS:
        raise Unsupported(
            f"{where}: the sandbox runs only the Python interpreter from image {image!r} "
            f"({', '.join(PYTHON_COMMANDS)}), not {argv[0]!r}"
        )
    return [python_for(uid, gids or set()), *argv[1:]]


# ---------------------------------------------------------------------------------------------
# listeners: every pod shares this machine's network namespace


_LISTEN_FLAG_RE = re.compile(r"^--?(listen-[a-z-]*urls)(?:=(.*))?$")
_WILDCARD_RE = re.compile(r"(?<=://)(?:0\.0\.0\.0|\[::\])(?=[:/]|$)")


def _local_listener(urls: str) -> str | None:
    for url in urls.split(","):
        host = url.split("://", 1)[-1].rsplit(":", 1)[0] if "://" in url else url.rsplit(":", 1)[0]
        if host in LOCAL_HOSTS or host.startswith("127."):
            return url
    return None


def rewrite_listeners(where: str, argv: list[str], address: str) -> list[str]:
    """Wildcard listen URLs (`0.0.0.0`, `[::]`) become the pod's own address; loopback
    listeners cannot be emulated (every pod shares this machine's loopback) and are an error."""
    out: list[str] = []
    previous_flag = ""
    for arg in argv:
        flag_value: str | None = None
        match = _LISTEN_FLAG_RE.match(arg)
        if match and match.group(2) is not None:
            flag_value = match.group(2)
        elif previous_flag:
            flag_value = arg
        if flag_value is not None:
            local = _local_listener(flag_value)
            if local:
                flag = match.group(1) if match else previous_flag
                raise Unsupported(
                    f"{where}: --{flag} listens on {local}: a loopback listener cannot be emulated "
                    "in the sandbox, where all pods share this machine's loopback interface "
                    "(listen on the pod IP or 0.0.0.0 instead)"
                )
        previous_flag = match.group(1) if match and match.group(2) is None else ""
        out.append(_WILDCARD_RE.sub(address, arg))
    return out


def check_config_listeners(where: str, config: dict[str, Any]) -> None:
    """The same rule for an etcd configuration file (`listen-*-urls` keys)."""
    for key, value in config.items():
        if key.startswith("listen-") and key.endswith("urls") and isinstance(value, str):
            local = _local_listener(value)
            if local or _WILDCARD_RE.search(value):
                raise Unsupported(
                    f"{where}: {key} listens on {local or value}: the sandbox cannot emulate "
                    "loopback or wildcard listeners in a configuration file (all pods share this "
                    "machine's network; listen on the pod IP, e.g. listen.localhost: false)"
                )


# ---------------------------------------------------------------------------------------------
# the pod's identity, env


@dataclass
class ApiInfo:
    host: str
    port: int
    token: str
    ca_pem: str


@dataclass
class PodContext:
    name: str
    namespace: str
    uid: str
    address: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]
    lookup: Lookup
    api: ApiInfo
    node_name: str = "sandbox"
    # (context, audience, expirationSeconds) -> a ServiceAccount token; None: the API's own token
    token: Callable[[PodContext, str, int], str] | None = None

    @property
    def where(self) -> str:
        return f"Pod {self.namespace}/{self.name}"


def _field_value(ctx: PodContext, path: str, where: str) -> str:
    simple = {
        "metadata.name": ctx.name,
        "metadata.namespace": ctx.namespace,
        "metadata.uid": ctx.uid,
        "status.podIP": ctx.address,
        "status.podIPs": ctx.address,
        "status.hostIP": ctx.api.host,
        "status.hostIPs": ctx.api.host,
        "spec.nodeName": ctx.node_name,
        "spec.serviceAccountName": str(ctx.spec.get("serviceAccountName") or "default"),
    }
    if path in simple:
        return simple[path]
    match = re.match(r"^metadata\.(labels|annotations)\[['\"](.+)['\"]\]$", path)
    if match:
        source = ctx.labels if match.group(1) == "labels" else ctx.annotations
        return str(source.get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        source = ctx.labels if path == "metadata.labels" else ctx.annotations
        return "\n".join(f'{k}="{v}"' for k, v in sorted(source.items()))
    raise Unsupported(f"{where}: fieldRef.fieldPath {path!r} is not supported by the sandbox")


def _resource_value(
    ctx: PodContext, ref: dict[str, Any], container: dict[str, Any], where: str
) -> str:
    target = container
    if ref.get("containerName"):
        everything = list(ctx.spec.get("initContainers") or []) + list(
            ctx.spec.get("containers") or []
        )
        named = [c for c in everything if c.get("name") == ref["containerName"]]
        if not named:
            raise Unsupported(
                f"{where}: resourceFieldRef.containerName {ref['containerName']!r} not found"
            )
        target = named[0]
    resource = str(ref.get("resource", ""))
    section, _, name = resource.partition(".")
    resources = target.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    if section not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise Unsupported(f"{where}: resourceFieldRef.resource {resource!r} is not supported")
    raw = (limits if section == "limits" else requests).get(name)
    if raw is None and section == "requests":
        raw = limits.get(name)
    if raw is None:
        # Kubernetes reports the node's allocatable amount for an unset limit.
        if section == "requests":
            amount = Decimal(0)
        elif name == "cpu":
            amount = Decimal(os.cpu_count() or 1)
        else:
            amount = Decimal(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    else:
        amount = parse_quantity(raw)
    divisor = parse_quantity(ref.get("divisor", "1") or "1")
    if divisor == 0:
        raise Unsupported(f"{where}: resourceFieldRef.divisor must not be 0")
    return str(math.ceil(amount / divisor))


def _object_data(obj: dict[str, Any]) -> dict[str, bytes]:
    """Every key of a ConfigMap or Secret as bytes."""
    out: dict[str, bytes] = {}
    if obj.get("kind") == "Secret":
        for key, value in (obj.get("data") or {}).items():
            out[key] = base64.b64decode(str(value or ""))
        for key, value in (obj.get("stringData") or {}).items():
            out[key] = str(value).encode()
    else:
        for key, value in (obj.get("data") or {}).items():
            out[key] = str(value).encode()
        for key, value in (obj.get("binaryData") or {}).items():
            out[key] = base64.b64decode(str(value or ""))
    return out


def _fetch(
    ctx: PodContext, kind: str, name: str, optional: bool, where: str
) -> dict[str, bytes] | None:
    obj = ctx.lookup(kind, ctx.namespace, name)
    if obj is None:
        if optional:
            return None
        raise MissingObject(f"{where}: {kind} {ctx.namespace}/{name} not found")
    return _object_data(obj)


def service_env(api: ApiInfo) -> dict[str, str]:
    return {
        "KUBERNETES_SERVICE_HOST": api.host,
        "KUBERNETES_SERVICE_PORT": str(api.port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(api.port),
        "KUBERNETES_PORT": f"tcp://{api.host}:{api.port}",
        "KUBERNETES_PORT_443_TCP": f"tcp://{api.host}:{api.port}",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_ADDR": api.host,
        "KUBERNETES_PORT_443_TCP_PORT": str(api.port),
    }


def container_env(ctx: PodContext, container: dict[str, Any], where: str) -> dict[str, str]:
    """The variables Kubernetes would give the container, in definition order (for expansion)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(key)
            if ref is None:
                continue
            data = _fetch(
                ctx, kind, str(ref.get("name", "")), bool(ref.get("optional")), f"{where}: envFrom"
            )
            for name, value in (data or {}).items():
                env[prefix + name] = value.decode(errors="replace")
    for index, item in enumerate(container.get("env") or []):
        name = str(item.get("name", ""))
        place = f"{where}: env[{name or index}]"
        if "value" in item or "valueFrom" not in item:
            env[name] = expand(
                str(item.get("value", "") if item.get("value") is not None else ""),
                {**service_env(ctx.api), **env},
            )
            continue
        value_from = item["valueFrom"] or {}
        if "fieldRef" in value_from:
            env[name] = _field_value(ctx, str(value_from["fieldRef"].get("fieldPath", "")), place)
        elif "resourceFieldRef" in value_from:
            env[name] = _resource_value(ctx, value_from["resourceFieldRef"], container, place)
        elif "configMapKeyRef" in value_from or "secretKeyRef" in value_from:
            kind, ref = (
                ("ConfigMap", value_from["configMapKeyRef"])
                if "configMapKeyRef" in value_from
                else ("Secret", value_from["secretKeyRef"])
            )
            optional = bool(ref.get("optional"))
            data = _fetch(ctx, kind, str(ref.get("name", "")), optional, place)
            key = str(ref.get("key", ""))
            if data is None or key not in data:
                if optional:
                    continue
                raise MissingObject(
                    f"{place}: key {key!r} not found in {kind} {ctx.namespace}/{ref.get('name')}"
                )
            env[name] = data[key].decode(errors="replace")
        else:
            raise Unsupported(
                f"{place}: valueFrom {sorted(value_from)} is not supported by the sandbox"
            )
    return env


# ---------------------------------------------------------------------------------------------
# volumes


@dataclass
class Mount:
    source: str
    target: str
    read_only: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "read_only": self.read_only}


SUPPORTED_VOLUMES = (
    "emptyDir",
    "configMap",
    "secret",
    "projected",
    "downwardAPI",
    "persistentVolumeClaim",
)


def _volume_type(volume: dict[str, Any]) -> str:
    for key in volume:
        if key != "name":
            return key
    return "emptyDir"


def _write_file(path: Path, data: bytes, mode: int, group: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if group is not None:
        # kubelet gives fsGroup ownership and group read of projected files.
        os.chown(path, 0, group)
        os.chown(path.parent, 0, group)
        mode |= 0o040
    os.chmod(path, mode)


def _project_keys(
    data: dict[str, bytes],
    items: list[dict[str, Any]] | None,
    default_mode: int,
    where: str,
    optional: bool,
) -> list[tuple[str, bytes, int]]:
    if not items:
        return [(key, value, default_mode) for key, value in sorted(data.items())]
    out = []
    for item in items:
        key = str(item.get("key", ""))
        if key not in data:
            if optional:
                continue
            raise MissingObject(f"{where}: key {key!r} not found")
        out.append((str(item.get("path", key)), data[key], int(item.get("mode", default_mode))))
    return out


def _downward_files(
    ctx: PodContext, items: list[dict[str, Any]], default_mode: int, where: str
) -> list[tuple[str, bytes, int]]:
    out = []
    containers = list(ctx.spec.get("containers") or [{}])
    for item in items:
        mode = int(item.get("mode", default_mode))
        if "fieldRef" in item:
            value = _field_value(ctx, str(item["fieldRef"].get("fieldPath", "")), where)
        elif "resourceFieldRef" in item:
            value = _resource_value(ctx, item["resourceFieldRef"], containers[0], where)
        else:
            raise Unsupported(
                f"{where}: downwardAPI item {item.get('path')!r} has neither fieldRef "
                "nor resourceFieldRef"
            )
        out.append((str(item.get("path", "")), value.encode(), mode))
    return out


def volume_files(
    ctx: PodContext, volume: dict[str, Any], where: str
) -> list[tuple[str, bytes, int]] | None:
    """The files of a ConfigMap/Secret/projected/downwardAPI volume; None for a directory."""
    kind = _volume_type(volume)
    source = volume.get(kind) or {}
    default_mode = int(source.get("defaultMode", 0o644))
    if kind in ("configMap", "secret"):
        name = str(source.get("name" if kind == "configMap" else "secretName", ""))
        object_kind = "ConfigMap" if kind == "configMap" else "Secret"
        optional = bool(source.get("optional"))
        data = _fetch(ctx, object_kind, name, optional, where)
        return _project_keys(
            data or {},
            source.get("items"),
            default_mode,
            f"{where}: {object_kind} {name}",
            optional,
        )
    if kind == "downwardAPI":
        return _downward_files(ctx, list(source.get("items") or []), default_mode, where)
    if kind == "projected":
        files: list[tuple[str, bytes, int]] = []
        for index, entry in enumerate(source.get("sources") or []):
            place = f"{where}.sources[{index}]"
            if "serviceAccountToken" in entry:
                token = entry["serviceAccountToken"] or {}
                issued = (
                    ctx.token(
                        ctx,
                        str(token.get("audience") or ""),
                        int(token.get("expirationSeconds") or 3600),
                    )
                    if ctx.token is not None
                    else ctx.api.token
                )
                files.append((str(token.get("path", "token")), issued.encode(), default_mode))
            elif "configMap" in entry or "secret" in entry:
                sub_kind = "configMap" if "configMap" in entry else "secret"
                ref = entry[sub_kind] or {}
                object_kind = "ConfigMap" if sub_kind == "configMap" else "Secret"
                optional = bool(ref.get("optional"))
                data = _fetch(ctx, object_kind, str(ref.get("name", "")), optional, place)
                files += _project_keys(
                    data or {},
                    ref.get("items"),
                    default_mode,
                    f"{place}: {object_kind} {ref.get('name')}",
                    optional,
                )
            elif "downwardAPI" in entry:
                files += _downward_files(
                    ctx, list((entry["downwardAPI"] or {}).get("items") or []), default_mode, place
                )
            else:
                raise Unsupported(
                    f"{place}: projected source {sorted(entry)} is not supported by the sandbox"
                )
        return files
    return None


def materialize_volumes(
    ctx: PodContext,
    pod_dir: Path,
    claim_dir: Callable[[str], Path],
    fs_group: int | None,
) -> dict[str, Path]:
    """Create each volume of the pod on disk; returns volume name -> host directory."""
    paths: dict[str, Path] = {}
    for volume in ctx.spec.get("volumes") or []:
        name = str(volume.get("name", ""))
        kind = _volume_type(volume)
        where = f"{ctx.where}: volumes[{name}]"
        if kind == "persistentVolumeClaim":
            path = claim_dir(str((volume.get(kind) or {}).get("claimName", "")))
        else:
            path = pod_dir / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        files = volume_files(ctx, volume, where)
        if files is not None:
            for relative, data, mode in files:
                _write_file(path / relative, data, mode, fs_group)
            if fs_group is not None:
                os.chown(path, 0, fs_group)
            os.chmod(path, 0o755 if fs_group is None else 0o2755)
        elif fs_group is not None:
            _give_to_group(path, fs_group)
        paths[name] = path
    return paths


def refresh_volumes(ctx: PodContext, pod_dir: Path, fs_group: int | None) -> list[str]:
    """Rewrite the files of ConfigMap/Secret/projected/downwardAPI volumes whose content changed,
    each by rename (so a file mounted with subPath keeps its old content, as in Kubernetes).
    Returns the changed paths; a source that cannot be read now is left as it was."""
    changed: list[str] = []
    for volume in ctx.spec.get("volumes") or []:
        name = str(volume.get("name", ""))
        if _volume_type(volume) not in ("configMap", "secret", "projected", "downwardAPI"):
            continue
        try:
            files = volume_files(ctx, volume, f"{ctx.where}: volumes[{name}]")
        except (MissingObject, Unsupported):
            continue
        for relative, data, mode in files or []:
            target = pod_dir / "volumes" / name / relative
            with contextlib.suppress(OSError):
                if target.read_bytes() == data:
                    continue
            staged = target.with_name(f"..{target.name}.new")
            _write_file(staged, data, mode, fs_group)
            os.replace(staged, target)
            changed.append(str(target))
    return changed


def _give_to_group(path: Path, group: int) -> None:
    """What kubelet does for fsGroup: the group owns the volume, group-writable, setgid dirs."""
    for root, dirs, files in os.walk(path):
        for entry in [
            root,
            *(os.path.join(root, d) for d in dirs),
            *(os.path.join(root, f) for f in files),
        ]:
            info = os.lstat(entry)
            if stat.S_ISLNK(info.st_mode):
                continue
            os.chown(entry, info.st_uid, group)
            extra = 0o2070 if stat.S_ISDIR(info.st_mode) else 0o060
            os.chmod(entry, stat.S_IMODE(info.st_mode) | extra)


def container_mounts(
    where: str, container: dict[str, Any], volumes: dict[str, Path]
) -> list[Mount]:
    mounts: list[Mount] = []
    for mount in container.get("volumeMounts") or []:
        name = str(mount.get("name", ""))
        if name not in volumes:
            raise Unsupported(f"{where}: volumeMounts[{name}]: no volume named {name!r} in the pod")
        source = volumes[name]
        sub_path = str(mount.get("subPath") or "")
        if sub_path:
            source = source / sub_path
            if not source.exists():
                source.mkdir(parents=True, exist_ok=True)
        mounts.append(
            Mount(str(source), str(mount.get("mountPath", "")), bool(mount.get("readOnly")))
        )
    mounts.sort(key=lambda m: m.target.count("/"))
    return mounts


# ---------------------------------------------------------------------------------------------
# probes, security, the whole container


@dataclass
class Probe:
    kind: str  # "http" or "tcp"
    port: int
    path: str = "/"
    scheme: str = "HTTP"
    host: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _port_number(where: str, port: Any, container: dict[str, Any]) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise Unsupported(f"{where}: port {port!r} is not a number or a named port of the container")


def parse_probe(where: str, probe: dict[str, Any], container: dict[str, Any]) -> Probe:
    common = {
        "initial_delay": float(probe.get("initialDelaySeconds", 0)),
        "period": float(probe.get("periodSeconds", 10)),
        "timeout": float(probe.get("timeoutSeconds", 1)),
        "success_threshold": int(probe.get("successThreshold", 1)),
        "failure_threshold": int(probe.get("failureThreshold", 3)),
    }
    if "httpGet" in probe:
        http = probe["httpGet"] or {}
        return Probe(
            kind="http",
            port=_port_number(f"{where}.httpGet.port", http.get("port"), container),
            path=str(http.get("path", "/")),
            scheme=str(http.get("scheme", "HTTP")).upper(),
            host=str(http.get("host", "")),
            headers={
                str(h.get("name")): str(h.get("value")) for h in http.get("httpHeaders") or []
            },
            **common,  # type: ignore[arg-type]
        )
    if "tcpSocket" in probe:
        tcp = probe["tcpSocket"] or {}
        return Probe(
            kind="tcp",
            port=_port_number(f"{where}.tcpSocket.port", tcp.get("port"), container),
            host=str(tcp.get("host", "")),
            **common,  # type: ignore[arg-type]
        )
    kinds: list[str] = [k for k in ("exec", "grpc") if k in probe] or sorted(probe)
    raise Unsupported(
        f"{where}: {'/'.join(kinds)} probes cannot be run by the sandbox "
        "(httpGet and tcpSocket only)"
    )


@dataclass
class Security:
    uid: int | None
    gid: int | None
    groups: list[int]
    fs_group: int | None
    read_only_root: bool
    no_new_privs: bool


def security_for(where: str, pod_spec: dict[str, Any], container: dict[str, Any]) -> Security:
    pod_sc = pod_spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return sc.get(key, pod_sc.get(key))

    uid = pick("runAsUser")
    gid = pick("runAsGroup")
    if pick("runAsNonRoot") and not uid:
        raise Unsupported(
            f"{where}: runAsNonRoot is set but no non-zero runAsUser: Kubernetes would refuse to "
            "start it (the sandbox cannot read the image's user)"
        )
    fs_group = pod_sc.get("fsGroup")
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if fs_group is not None:
        groups.append(int(fs_group))
    return Security(
        uid=int(uid) if uid is not None else None,
        gid=int(gid) if gid is not None else None,
        groups=sorted(set(groups)),
        fs_group=int(fs_group) if fs_group is not None else None,
        read_only_root=bool(sc.get("readOnlyRootFilesystem")),
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
    )


@dataclass
class ContainerSpec:
    name: str
    role: str  # "init", "sidecar" or "main"
    image: str
    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    security: Security
    working_dir: str
    probes: dict[str, Probe]
    ports: dict[str, int]

    def launch_spec(self, hostname: str, hosts_file: str) -> dict[str, Any]:
        return {
            "hostname": hostname,
            "hosts_file": hosts_file,
            "mounts": [m.as_dict() for m in self.mounts],
            "read_only_root": self.security.read_only_root,
            "uid": self.security.uid,
            "gid": self.security.gid
            if self.security.gid is not None
            else (0 if self.security.uid is not None else None),
            "groups": self.security.groups,
            "no_new_privs": self.security.no_new_privs,
            "cwd": self.working_dir or "/",
            "argv": self.argv,
            "env": self.env,
        }


def containers_of(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, container) in start order: init containers (and native sidecars), then containers."""
    out: list[tuple[str, dict[str, Any]]] = []
    for container in spec.get("initContainers") or []:
        out.append(("sidecar" if container.get("restartPolicy") == "Always" else "init", container))
    for container in spec.get("containers") or []:
        out.append(("main", container))
    return out


def build_container(
    ctx: PodContext,
    role: str,
    container: dict[str, Any],
    volumes: dict[str, Path],
    tools: Tools,
) -> ContainerSpec:
    name = str(container.get("name", ""))
    where = f"{ctx.where}: container {name}"
    security = security_for(where, ctx.spec, container)
    user_env = container_env(ctx, container, where)
    kind = image_kind(str(container.get("image", "")))
    env = {
        "PATH": IMAGE_PATH,
        "HOSTNAME": ctx.name,
        "HOME": "/root" if not security.uid else "/",
        **({"LANG": "C.UTF-8"} if kind == "python" else {}),
        **service_env(ctx.api),
        **user_env,
    }
    for key, value in list(env.items()):
        if key.startswith("ETCD_LISTEN_"):
            env[key] = rewrite_listeners(
                f"{where}: env {key}",
                [f"--{key[5:].lower().replace('_', '-')}={value}"],
                ctx.address,
            )[0].split("=", 1)[1]
    command = [expand(str(c), env) for c in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    gids = set(security.groups) | ({security.gid} if security.gid is not None else {0})
    argv = program_argv(
        where, str(container.get("image", "")), command, args, tools, security.uid, gids
    )
    argv = [argv[0], *rewrite_listeners(where, argv[1:], ctx.address)]
    mounts = container_mounts(where, container, volumes)
    if image_kind(str(container.get("image", ""))) == "etcd":
        argv[0], binary = tool_mount(argv[0])
        mounts.append(binary)
    probes = {}
    for key in ("startupProbe", "readinessProbe", "livenessProbe"):
        if container.get(key):
            probes[key.removesuffix("Probe")] = parse_probe(
                f"{where}: {key}", container[key], container
            )
    ports = {
        str(p.get("name") or p.get("containerPort")): int(p["containerPort"])
        for p in container.get("ports") or []
        if "containerPort" in p
    }
    return ContainerSpec(
        name=name,
        role=role,
        image=str(container.get("image", "")),
        argv=argv,
        env=env,
        mounts=mounts,
        security=security,
        working_dir=str(container.get("workingDir") or "/"),
        probes=probes,
        ports=ports,
    )


# ---------------------------------------------------------------------------------------------
# static checks of a pod template, before anything starts

_UNSUPPORTED_POD_FIELDS = {
    "hostNetwork": "pods always share this machine's network namespace in the sandbox",
    "hostPID": "the sandbox does not share process namespaces",
    "hostIPC": "the sandbox does not share IPC namespaces",
    "ephemeralContainers": "ephemeral containers are not run",
}


def check_template(
    where: str, template: dict[str, Any], tools: Tools, lookup_config: Lookup, namespace: str
) -> list[str]:
    """Every reason the sandbox cannot run pods of this template (empty: it can)."""
    errors: list[str] = []
    spec = template.get("spec") or {}
    for key, why in _UNSUPPORTED_POD_FIELDS.items():
        if spec.get(key):
            errors.append(f"{where}: spec.template.spec.{key}: cannot be emulated ({why})")
    for volume in spec.get("volumes") or []:
        kind = _volume_type(volume)
        if kind not in SUPPORTED_VOLUMES:
            errors.append(
                f"{where}: spec.template.spec.volumes[{volume.get('name')}]: {kind} volumes "
                f"cannot be emulated (the sandbox supports {', '.join(SUPPORTED_VOLUMES)} "
                "and volumeClaimTemplates)"
            )
    volume_names = {str(v.get("name")) for v in spec.get("volumes") or []}
    for _, container in containers_of(spec):
        name = container.get("name")
        place = f"{where}: container {name}"
        image = str(container.get("image", ""))
        if image_kind(image) is None:
            errors.append(
                f"{place}: image {image!r} has no local program in the sandbox "
                "(it runs etcd images "
                "such as gcr.io/etcd-development/etcd and Python images such as python:3.12)"
            )
        else:
            try:
                security = security_for(place, spec, container)
                command = [str(c) for c in container.get("command") or []]
                args = [str(a) for a in container.get("args") or []]
                program_argv(place, image, command, args, tools, security.uid, set(security.groups))
                rewrite_listeners(place, args if command else args, "127.0.0.2")
                for key in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if container.get(key):
                        parse_probe(f"{place}: {key}", container[key], container)
            except Unsupported as err:
                errors.append(str(err))
        if container.get("lifecycle"):
            hooks = sorted(container["lifecycle"])
            errors.append(
                f"{place}: lifecycle {'/'.join(hooks)} hooks cannot be run by the sandbox"
            )
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") not in volume_names:
                errors.append(f"{place}: volumeMounts[{mount.get('name')}]: no such volume")
        for env in container.get("env") or []:
            value_from = env.get("valueFrom") or {}
            if "fieldRef" in value_from:
                path = str(value_from["fieldRef"].get("fieldPath", ""))
                ok = path in (
                    "metadata.name",
                    "metadata.namespace",
                    "metadata.uid",
                    "status.podIP",
                    "status.podIPs",
                    "status.hostIP",
                    "status.hostIPs",
                    "spec.nodeName",
                    "spec.serviceAccountName",
                ) or re.match(r"^metadata\.(labels|annotations)\[['\"].+['\"]\]$", path)
                if not ok:
                    errors.append(
                        f"{place}: env[{env.get('name')}]: fieldRef.fieldPath {path!r} "
                        "is not supported by the sandbox"
                    )
    return errors


__all__ = [
    "ContainerSpec",
    "MissingObject",
    "PodContext",
    "ToolMissing",
    "Tools",
    "Unsupported",
    "UnknownVersion",
    "build_container",
    "check_template",
    "expand",
]
