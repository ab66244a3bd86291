"""The Helm 4 plugin as users install a released one: from a plugin archive (`helm plugin
package`), signed, verified on install, running the `etcd-chart` that pip installed.

The archive holds plugin.yaml and bin/ only (README, "Releasing"): the code comes from the Python
package of the same version, so the archive stays small and never carries a second copy of it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from argocd import sidecar_path
from artifacts import CHART_VERSION, SigningKey, ok, run, staged_plugin
from built_package import BuiltPackage
from helmhome import helm_env

ARCHIVE = f"etcd-chart-{CHART_VERSION}.tgz"


@pytest.fixture
def signed_archive(signed_plugin_archive: Path, tmp_path: Path) -> Path:
    """A copy of the signed archive and its .prov, for this test alone to use or damage."""
    out = tmp_path / "dist"
    out.mkdir()
    shutil.copy2(signed_plugin_archive, out)
    shutil.copy2(f"{signed_plugin_archive}.prov", out)
    return out / signed_plugin_archive.name


def test_signed_archive_verifies_and_installs(
    signed_archive: Path,
    signing_key: SigningKey,
    signed_chart: Path,
    package: BuiltPackage,
    helm4: str,
    tmp_path: Path,
) -> None:
    keyring = str(signing_key.public_keyring)
    env = helm_env(tmp_path / "home", 4)
    verified = run([helm4, "plugin", "verify", str(signed_archive), "--keyring", keyring], env)
    assert verified.returncode == 0, verified.stderr
    ok([helm4, "plugin", "install", str(signed_archive), "--keyring", keyring], env)
    listed = ok([helm4, "plugin", "list"], env)
    assert f"etcd-chart\t{CHART_VERSION}" in listed and "postrenderer/v1" in listed
    installed = Path(env["HELM_PLUGINS"]) / "etcd-chart"
    assert sorted(str(p.relative_to(installed)) for p in installed.rglob("*") if p.is_file()) == [
        "bin/etcd-post-render",
        "plugin.yaml",
    ]
    # The plugin runs the etcd-chart on PATH, as `pip install etcd-chart` of the wheel leaves it.
    env["PATH"] = f"{sidecar_path(tmp_path, helm4, package.command)}:/usr/bin:/bin"
    rendered = ok([
        helm4, "template", "etcd", str(signed_chart), "--post-renderer", "etcd-chart",
        "--post-renderer-args", "--offline", "--set", "replicas=3",
    ], env)  # fmt: skip
    configmap = next(
        doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "ConfigMap"
        and doc["metadata"]["name"] == "etcd-config"
    )  # fmt: skip
    assert yaml.safe_load(configmap["data"]["etcd.conf.json"])["initial-cluster"].count("=") == 3


def test_tampered_archive_is_refused(
    signed_archive: Path, signing_key: SigningKey, helm4: str, tmp_path: Path
) -> None:
    with signed_archive.open("ab") as archive:
        archive.write(b"\0" * 512)
    env = helm_env(tmp_path / "home", 4)
    refused = run([helm4, "plugin", "install", str(signed_archive), "--keyring",
                   str(signing_key.public_keyring)], env)  # fmt: skip
    assert refused.returncode == 1
    assert not (Path(env["HELM_PLUGINS"]) / "etcd-chart").exists()


def test_unsigned_archive_installs_only_without_verification(helm4: str, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    env = helm_env(tmp_path / "home", 4)
    ok([helm4, "plugin", "package", str(staged_plugin(tmp_path)), "--sign=false",
        "--destination", str(out)], env)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [ARCHIVE]
    refused = run([helm4, "plugin", "install", str(out / ARCHIVE)], env)
    assert refused.returncode == 1
    assert ".prov" in refused.stderr
    ok([helm4, "plugin", "install", str(out / ARCHIVE), "--verify=false"], env)
    assert f"etcd-chart\t{CHART_VERSION}" in ok([helm4, "plugin", "list"], env)
