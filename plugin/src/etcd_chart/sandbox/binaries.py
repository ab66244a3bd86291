"""Which etcd binaries run a container of an etcd image: those of the version its tag names.

`gcr.io/etcd-development/etcd:v3.6.16` runs etcd 3.6.16 (so does `registry.k8s.io/etcd:3.6.16-0`,
whose `-0` is the image's own revision). The binaries of version V are looked for, in order, in
  1. the sandbox's bin dir (`--bin-dir DIR`, else env ETCD_CHART_BIN_DIR): DIR/vV/<program>,
  2. the cache `ci/install-tools.sh` fills: .cache/etcd/vV/<program>,
  3. PATH, when the program there reports exactly version V.
A tag that names no version, or a version with no binaries, is refused with a message that says
what was found and how to get the missing version.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from etcd_chart.helm import CACHE_BIN, INSTALL_SCRIPT, ToolMissing

BIN_DIR_ENV = "ETCD_CHART_BIN_DIR"
CACHE_ETCD = CACHE_BIN.parent / "etcd"
PROGRAMS = ("etcd", "etcdctl", "etcdutl")

# v3.6.16, 3.6.16, 3.6.16-0 (an image revision), v3.7.0-rc.0 (a pre-release).
_TAG_RE = re.compile(r"^v?(\d+\.\d+\.\d+)(?:-(\d+)|(-[0-9A-Za-z][0-9A-Za-z.]*))?$")
_VERSION_LINE_RE = re.compile(r"^(?:etcd Version|etcdctl version|etcdutl version):\s*(\S+)", re.M)


class UnknownVersion(ValueError):
    """The image's tag names no etcd version (`latest`, no tag, a digest only)."""


def image_tag(image: str) -> str:
    """`repo/etcd:v3.6.0@sha256:...` -> `v3.6.0`; "" when the image has no tag."""
    name = image.split("@", 1)[0]
    last = name.rpartition("/")[2]
    return last.partition(":")[2]


def tag_version(where: str, image: str) -> str:
    """The etcd version an image's tag names, e.g. `3.6.16`."""
    tag = image_tag(image)
    match = _TAG_RE.match(tag)
    if not match:
        said = f"tag {tag!r}" if tag else ("only a digest" if "@" in image else "no tag")
        raise UnknownVersion(
            f"{where}: image {image!r} has {said}, which names no etcd version: the sandbox "
            "runs the etcd release an image's tag names, so give it a version tag such as "
            "v3.6.16 (with the chart: image.tag, and image.digest empty)"
        )
    return match.group(1) + (match.group(3) or "")


def _version_key(version: str) -> tuple[int, ...]:
    core = version.split("-", 1)[0]
    return tuple(int(part) for part in core.split(".") if part.isdigit())


def reported_version(binary: str) -> str | None:
    """The version a binary reports (`etcd --version`, `etcdctl version`, `etcdutl version`)."""
    flag = "--version" if os.path.basename(binary) == "etcd" else "version"
    try:
        out = subprocess.run(  # noqa: S603
            [binary, flag], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION_LINE_RE.search(out.stdout)
    return match.group(1) if match else None


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@dataclass
class Tools:
    """Where the etcd programs of each version are on this machine (found lazily, remembered)."""

    found: dict[tuple[str, str], str] = field(default_factory=dict)  # (version, program) -> path
    bin_dir: str | None = None
    cache: Path = CACHE_ETCD

    def set_bin_dir(self, bin_dir: str | None) -> None:
        if bin_dir != self.bin_dir:
            self.bin_dir = bin_dir
            self.found.clear()

    def _dirs(self) -> list[Path]:
        bin_dir = self.bin_dir or os.environ.get(BIN_DIR_ENV)
        return [Path(bin_dir), self.cache] if bin_dir else [self.cache]

    def _path_version(self, program: str) -> tuple[str, str] | None:
        found = shutil.which(program)
        if not found:
            return None
        version = reported_version(found)
        return (found, version) if version else None

    def find(self, program: str, version: str) -> str | None:
        """Path of `program` at exactly `version` (as it reports itself), or None."""
        key = (version, program)
        if key in self.found:
            return self.found[key]
        for directory in self._dirs():
            candidate = directory / f"v{version}" / program
            if _executable(candidate) and reported_version(str(candidate)) == version:
                self.found[key] = str(candidate)
                return self.found[key]
        on_path = self._path_version(program)
        if on_path and on_path[1] == version:
            self.found[key] = on_path[0]
            return self.found[key]
        return None

    def versions(self) -> dict[str, list[str]]:
        """Every version with all three programs, newest first, and where each one is."""
        places: dict[str, list[str]] = {}
        for directory in self._dirs():
            if not directory.is_dir():
                continue
            for entry in sorted(directory.iterdir()):
                if entry.name.startswith("v") and all(_executable(entry / p) for p in PROGRAMS):
                    places.setdefault(entry.name[1:], []).append(str(directory))
        on_path = self._path_version("etcd")
        if on_path:
            places.setdefault(on_path[1], []).append(f"PATH ({on_path[0]})")
        return {v: places[v] for v in sorted(places, key=_version_key, reverse=True)}

    def etcd(self, program: str, image: str, where: str) -> str:
        """The binary that runs `program` for a container of `image`.

        Raises UnknownVersion when the tag names no version, ToolMissing when this machine has
        no binary of that version.
        """
        version = tag_version(where, image)
        found = self.find(program, version)
        if found:
            return found
        have = [f"{v} in {', '.join(dirs)}" for v, dirs in self.versions().items()]
        looked = ", ".join(f"{d}/v{version}/" for d in self._dirs())
        raise ToolMissing(
            f"{where}: image {image!r} runs etcd {version}, and this machine has no {program} "
            f"{version} (looked in {looked} and PATH; found "
            f"{'; '.join(have) if have else 'no etcd at all'}). Pass `--bin-dir DIR` (or set "
            f"{BIN_DIR_ENV}) for a directory holding v{version}/etcd, v{version}/etcdctl and "
            f"v{version}/etcdutl, or put etcd {version} on PATH"
            + (
                f"; in this clone, `bash {INSTALL_SCRIPT}` builds the versions the tests use"
                if INSTALL_SCRIPT.is_file()
                else ""
            )
        )
