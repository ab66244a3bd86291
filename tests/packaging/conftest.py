"""Fixtures of the packaging tests: a throwaway signing key and the chart packaged and signed with
it, as a release makes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from artifacts import (
    CHART,
    CHART_VERSION,
    KEY_NAME,
    SigningKey,
    make_signing_key,
    ok,
    staged_plugin,
)
from built_package import BuiltPackage, built_package
from etcd_chart.helm import ToolMissing, find_tool
from helmhome import helm_env


def tool(name: str) -> str:
    try:
        return find_tool(name)
    except ToolMissing as err:  # the suite is useless without them: fail loudly, never skip
        pytest.fail(f"{err}", pytrace=False)


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return make_signing_key(tmp_path_factory.mktemp("gnupg") / "home")


@pytest.fixture(scope="session")
def signed_chart(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey, helm4: str
) -> Path:
    """`helm package --sign` of chart/: the package, with its .prov beside it."""
    out = tmp_path_factory.mktemp("signed-chart")
    ok([
        helm4, "package", str(CHART), "--destination", str(out), "--sign", "--key", KEY_NAME,
        "--keyring", str(signing_key.secret_keyring),
    ])  # fmt: skip
    package = out / f"etcd-{CHART_VERSION}.tgz"
    assert sorted(path.name for path in out.iterdir()) == [package.name, f"{package.name}.prov"]
    return package


@pytest.fixture(scope="session")
def registry_binary() -> str:
    """The `distribution` registry, built from its Go module (ci/gobuild/distribution)."""
    return tool("registry")


@pytest.fixture(scope="session")
def ct_binary() -> str:
    """chart-testing's `ct`, built from its Go module (ci/gobuild/chart-testing)."""
    return tool("ct")


@pytest.fixture(scope="session")
def package(tmp_path_factory: pytest.TempPathFactory) -> BuiltPackage:
    """The wheel as a release builds it, pip-installed into a virtual environment of its own."""
    return built_package(tmp_path_factory)


@pytest.fixture(scope="session")
def signed_plugin_archive(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey, helm4: str
) -> Path:
    """`helm plugin package --sign` of the staged plugin: the archive, with its .prov beside it."""
    work = tmp_path_factory.mktemp("signed-plugin")
    out = work / "dist"
    ok([
        helm4, "plugin", "package", str(staged_plugin(work)), "--destination", str(out),
        "--key", KEY_NAME, "--keyring", str(signing_key.secret_keyring),
    ], helm_env(work / "home", 4))  # fmt: skip
    archive = out / f"etcd-chart-{CHART_VERSION}.tgz"
    assert sorted(p.name for p in out.iterdir()) == [archive.name, f"{archive.name}.prov"]
    return archive
