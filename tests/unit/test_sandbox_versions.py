"""Which etcd binaries the sandbox runs for an image: the version its tag names, found in the
bin dir, then the cache, then on PATH (real etcd binaries of the releases the tests run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from etcd_chart.helm import INSTALL_SCRIPT
from etcd_chart.sandbox import binaries
from etcd_chart.sandbox.binaries import BIN_DIR_ENV, Tools, UnknownVersion, tag_version
from etcd_chart.sandbox.podspec import ToolMissing, Unsupported, program_argv
from etcd_versions import etcd_program, etcd_release

# Its module-scoped fixtures are shared: the whole module runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_sandbox_versions")

PROGRAMS = ("etcd", "etcdctl", "etcdutl")


@pytest.fixture(scope="module")
def releases() -> dict[str, str]:
    return {minor: etcd_release(minor) for minor in ("3.5", "3.6", "3.7")}


def version_dir(root: Path, version: str) -> Path:
    """root/v<version>/ holding links to the real binaries of that version."""
    directory = root / f"v{version}"
    directory.mkdir(parents=True)
    for program in PROGRAMS:
        (directory / program).symlink_to(etcd_program(version, program))
    return directory


@pytest.fixture
def empty_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """PATH without any etcd; returns a directory on PATH to put one in."""
    on_path = tmp_path / "path"
    on_path.mkdir()
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.delenv(BIN_DIR_ENV, raising=False)
    return on_path


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("gcr.io/etcd-development/etcd:v3.6.16", "3.6.16"),
        ("quay.io/coreos/etcd:v3.5.16", "3.5.16"),
        ("registry.k8s.io/etcd:3.5.16-0", "3.5.16"),
        ("gcr.io/etcd-development/etcd:v3.7.0-rc.0", "3.7.0-rc.0"),
        ("localhost:5000/etcd:v3.7.3@sha256:" + "a" * 64, "3.7.3"),
    ],
)
def test_the_tag_names_the_version(image: str, version: str) -> None:
    assert tag_version("w", image) == version


@pytest.mark.parametrize(
    ("image", "said"),
    [
        ("gcr.io/etcd-development/etcd:latest", "tag 'latest'"),
        ("gcr.io/etcd-development/etcd:v3.7", "tag 'v3.7'"),
        ("gcr.io/etcd-development/etcd", "no tag"),
        ("localhost:5000/etcd", "no tag"),
        ("gcr.io/etcd-development/etcd@sha256:" + "b" * 64, "only a digest"),
    ],
)
def test_a_tag_that_names_no_version_is_refused(image: str, said: str) -> None:
    where = "StatefulSet default/etcd: container etcd"
    with pytest.raises(UnknownVersion) as caught:
        tag_version(where, image)
    assert str(caught.value) == (
        f"{where}: image {image!r} has {said}, which names no etcd version: the sandbox runs the "
        "etcd release an image's tag names, so give it a version tag such as v3.6.16 (with the "
        "chart: image.tag, and image.digest empty)"
    )
    with pytest.raises(Unsupported, match="names no etcd version"):
        program_argv(where, image, [], [], Tools())


def test_each_image_runs_its_own_version(
    tmp_path: Path, empty_path: Path, releases: dict[str, str]
) -> None:
    cache = tmp_path / "cache"
    for version in releases.values():
        version_dir(cache, version)
    tools = Tools(cache=cache)
    for version in releases.values():
        argv = program_argv(
            "w", f"gcr.io/etcd-development/etcd:v{version}", [], ["--name=a"], tools
        )
        assert argv == [str(cache / f"v{version}" / "etcd"), "--name=a"]
        assert binaries.reported_version(argv[0]) == version
        ctl = program_argv("w", f"etcd:v{version}", ["etcdctl", "get", "k"], [], tools)
        assert ctl[0] == str(cache / f"v{version}" / "etcdctl")
        assert binaries.reported_version(ctl[0]) == version


def test_the_bin_dir_comes_before_the_cache_and_the_option_before_the_env(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch, releases: dict[str, str]
) -> None:
    version = releases["3.6"]
    cache, from_env, from_option = tmp_path / "cache", tmp_path / "env", tmp_path / "option"
    for root in (cache, from_env, from_option):
        version_dir(root, version)
    image = f"gcr.io/etcd-development/etcd:v{version}"
    tools = Tools(cache=cache)
    assert tools.etcd("etcd", image, "w") == str(cache / f"v{version}" / "etcd")

    monkeypatch.setenv(BIN_DIR_ENV, str(from_env))
    assert Tools(cache=cache).etcd("etcd", image, "w") == str(from_env / f"v{version}" / "etcd")

    tools = Tools(cache=cache)
    tools.set_bin_dir(str(from_option))
    assert tools.etcd("etcd", image, "w") == str(from_option / f"v{version}" / "etcd")
    # A bin dir without that version falls through to the cache.
    tools.set_bin_dir(str(tmp_path / "empty"))
    assert tools.etcd("etcd", image, "w") == str(cache / f"v{version}" / "etcd")


def test_path_counts_only_for_the_exact_version_it_reports(
    tmp_path: Path, empty_path: Path, releases: dict[str, str]
) -> None:
    for program in PROGRAMS:
        (empty_path / program).symlink_to(etcd_program(releases["3.5"], program))
    tools = Tools(cache=tmp_path / "no-cache")
    five = f"quay.io/coreos/etcd:v{releases['3.5']}"
    assert tools.etcd("etcd", five, "w") == str(empty_path / "etcd")
    assert tools.etcd("etcdctl", five, "w") == str(empty_path / "etcdctl")
    assert tools.etcd("etcdutl", five, "w") == str(empty_path / "etcdutl")
    assert tools.find("etcd", releases["3.6"]) is None
    assert tools.versions() == {releases["3.5"]: [f"PATH ({empty_path / 'etcd'})"]}


def test_a_version_without_binaries_is_refused_with_what_was_found(
    tmp_path: Path, empty_path: Path, releases: dict[str, str]
) -> None:
    cache, bin_dir = tmp_path / "cache", tmp_path / "bin"
    version_dir(cache, releases["3.7"])
    version_dir(cache, releases["3.5"])
    version_dir(bin_dir, releases["3.6"])
    # Neither a binary of another version nor an etcd without etcdctl and etcdutl counts.
    incomplete = bin_dir / "v3.4.99"
    incomplete.mkdir()
    (incomplete / "etcd").symlink_to(etcd_program(releases["3.5"], "etcd"))
    tools = Tools(cache=cache)
    tools.set_bin_dir(str(bin_dir))
    where = "StatefulSet default/etcd: container etcd"
    image = "gcr.io/etcd-development/etcd:v3.4.99"
    with pytest.raises(ToolMissing) as caught:
        program_argv(where, image, [], [], tools)
    assert str(caught.value) == (
        f"{where}: image {image!r} runs etcd 3.4.99, and this machine has no etcd 3.4.99 "
        f"(looked in {bin_dir}/v3.4.99/, {cache}/v3.4.99/ and PATH; found "
        f"{releases['3.7']} in {cache}; {releases['3.6']} in {bin_dir}; "
        f"{releases['3.5']} in {cache}). Pass `--bin-dir DIR` (or set ETCD_CHART_BIN_DIR) for a "
        "directory holding v3.4.99/etcd, v3.4.99/etcdctl and v3.4.99/etcdutl, or put etcd "
        f"3.4.99 on PATH; in this clone, `bash {INSTALL_SCRIPT}` builds the versions the tests use"
    )


def test_outside_a_clone_the_message_names_no_install_script(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pip user has no ci/install-tools.sh: the message must not send them to it."""
    monkeypatch.setattr(binaries, "INSTALL_SCRIPT", tmp_path / "no-such" / "install-tools.sh")
    tools = Tools(cache=tmp_path / "cache")
    with pytest.raises(ToolMissing) as caught:
        tools.etcd("etcd", "etcd:v3.4.99", "w")
    message = str(caught.value)
    assert message.endswith(
        "Pass `--bin-dir DIR` (or set ETCD_CHART_BIN_DIR) for a directory holding v3.4.99/etcd, "
        "v3.4.99/etcdctl and v3.4.99/etcdutl, or put etcd 3.4.99 on PATH"
    )
    assert "install-tools" not in message


def test_a_binary_that_appears_later_is_found(
    tmp_path: Path, empty_path: Path, releases: dict[str, str]
) -> None:
    cache = tmp_path / "cache"
    tools = Tools(cache=cache)
    image = f"etcd:v{releases['3.7']}"
    with pytest.raises(ToolMissing, match="found no etcd at all"):
        tools.etcd("etcd", image, "w")
    version_dir(cache, releases["3.7"])
    assert tools.etcd("etcd", image, "w") == str(cache / f"v{releases['3.7']}" / "etcd")
    assert os.access(tools.etcd("etcdutl", image, "w"), os.X_OK)
