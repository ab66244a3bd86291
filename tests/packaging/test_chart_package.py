"""The chart as a package: what `helm package --sign` makes lints clean, validates against the
Kubernetes versions Chart.yaml supports, verifies (and a tampered copy does not), passes
chart-testing's `ct lint`, and carries Artifact Hub metadata that matches what it runs."""

from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from artifacts import CHART, CHART_VERSION, REPO, SigningKey, make_signing_key, ok, run

SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))


def kube_minors_with_schemas() -> list[tuple[int, int]]:
    return sorted(
        {
            (int(major), int(minor))
            for major, minor, *_ in (v.split(".") for v in kubernetes_validate.utils.all_versions())
        }
    )


def supported_range() -> tuple[str, str]:
    """The lowest and highest Kubernetes minor that Chart.yaml's kubeVersion admits and
    kubernetes-validate has schemas for."""
    constraint = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    lowest = re.fullmatch(r">=\s*(\d+)\.(\d+)\.\d+(-0)?", constraint)
    assert lowest, f"kubeVersion {constraint!r}: this test reads only a lower bound"
    floor = (int(lowest.group(1)), int(lowest.group(2)))
    admitted = [minor for minor in kube_minors_with_schemas() if minor >= floor]
    # The lowest supported version itself must be checked, not merely the lowest one with schemas.
    assert admitted[0] == floor, f"kubernetes-validate has no schemas for {floor}"
    return ".".join(map(str, admitted[0])), ".".join(map(str, admitted[-1]))


LOWEST, HIGHEST = supported_range()


def objects_of(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_packaged_chart_lints_strict_clean(every_helm: str, signed_chart: Path) -> None:
    for values in [None, *SCENARIOS]:
        extra = ["--values", str(values)] if values else []
        result = run([every_helm, "lint", "--strict", str(signed_chart), *extra])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
        assert "[WARNING]" not in result.stdout and "[INFO]" not in result.stdout


@pytest.mark.parametrize("kube_version", [LOWEST, HIGHEST])
def test_packaged_chart_validates_strict_on_supported_kubernetes(
    helm4: str, signed_chart: Path, kube_version: str
) -> None:
    problems = []
    for values in SCENARIOS:
        text = ok([
            helm4, "template", "etcd", str(signed_chart), "--namespace", "etcd", "--values",
            str(values), "--kube-version", f"{kube_version}.0",
        ])  # fmt: skip
        for body in objects_of(text):
            # cert-manager and Prometheus Operator objects are checked against their CRDs in
            # tests/chart/test_chart_scenarios.py; kubernetes-validate knows built-in kinds only.
            if body["apiVersion"].startswith(("cert-manager.io/", "monitoring.coreos.com/")):
                continue
            try:
                kubernetes_validate.validate(body, kube_version, strict=True)
            except kubernetes_validate.ValidationError as err:
                where = ".".join(str(part) for part in err.path)
                problems.append(f"{values.name}: {body['kind']}/{body['metadata']['name']}: "
                                f"{where}: {err.message}")  # fmt: skip
    assert problems == []


def test_packaged_chart_refuses_kubernetes_below_its_kube_version(
    helm4: str, signed_chart: Path
) -> None:
    major, minor = LOWEST.split(".")
    below = f"{major}.{int(minor) - 1}.0"
    result = run([helm4, "template", "etcd", str(signed_chart), "--kube-version", below])
    assert result.returncode == 1
    assert f"chart requires kubeVersion: >={LOWEST}.0-0 which is incompatible with Kubernetes " \
        f"v{below}" in result.stderr  # fmt: skip


def test_artifacthub_images_are_the_images_a_default_install_runs(helm4: str) -> None:
    annotations = yaml.safe_load((CHART / "Chart.yaml").read_text())["annotations"]
    listed = {entry["image"] for entry in yaml.safe_load(annotations["artifacthub.io/images"])}
    run_images = set()
    for body in objects_of(ok([helm4, "template", "etcd", str(CHART)])):
        pod = (body.get("spec") or {}).get("template", {}).get("spec") or {}
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            run_images.add(container["image"])
    assert listed == run_images
    for image in listed:  # a version, never a floating tag
        assert re.search(r":v?\d+\.\d+", image), image


def test_artifacthub_metadata_is_complete(signed_chart: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    annotations = chart["annotations"]
    assert annotations["artifacthub.io/license"] == "Apache-2.0"
    with tarfile.open(signed_chart) as package:
        license_file = package.extractfile("etcd/LICENSE")
        assert license_file is not None
        assert license_file.read() == (REPO / "LICENSE").read_bytes()
    changes = yaml.safe_load(annotations["artifacthub.io/changes"])
    assert changes and {change["kind"] for change in changes} <= {
        "added", "changed", "deprecated", "removed", "fixed", "security"
    }  # fmt: skip
    links = yaml.safe_load(annotations["artifacthub.io/links"])
    assert all(link["url"].startswith("https://") for link in links)
    sign_key = yaml.safe_load(annotations["artifacthub.io/signKey"])
    assert re.fullmatch(r"[0-9A-F]{40}", sign_key["fingerprint"])
    assert sign_key["url"].startswith("https://")
    image_tag = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["tag"]
    assert image_tag == f"v{chart['appVersion']}"
    repository = yaml.safe_load((REPO / "deploy" / "artifacthub-repo.yml").read_text())
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", repository["repositoryID"])
    assert repository["owners"] and all("@" in owner["email"] for owner in repository["owners"])


def test_certificates_and_issuers_sync_before_the_members(helm4: str) -> None:
    """Argo CD applies lower sync waves first and waits for them to be healthy: the self-signed
    Issuer, then the CA Certificate, then the CA Issuer, then the members' Certificates, then the
    rest (wave 0) with the StatefulSet."""
    everything = "tls.enabled=true,webui.enabled=true"
    text = ok([helm4, "template", "etcd", str(CHART), "--set", everything])
    waves = {}
    for body in objects_of(text):
        annotations = body["metadata"].get("annotations") or {}
        waves[(body["kind"], body["metadata"]["name"])] = int(
            annotations.get("argocd.argoproj.io/sync-wave", "0")
        )
    assert {key: wave for key, wave in waves.items() if wave != 0} == {
        ("Issuer", "etcd-selfsigned"): -4,
        ("Certificate", "etcd-ca"): -3,
        ("Issuer", "etcd-ca"): -2,
        ("Certificate", "etcd-server"): -1,
        ("Certificate", "etcd-peer"): -1,
        ("Certificate", "etcd-client"): -1,
        ("Certificate", "etcd-agent"): -1,
        ("Certificate", "etcd-webui"): -1,
    }
    assert waves[("StatefulSet", "etcd")] == 0


@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_signed_package_verifies(
    helm_name: str, request: pytest.FixtureRequest, signed_chart: Path, signing_key: SigningKey
) -> None:
    helm = request.getfixturevalue(helm_name)
    result = run([helm, "verify", str(signed_chart), "--keyring", str(signing_key.public_keyring)])
    assert result.returncode == 0, result.stderr
    assert f"Using Key With Fingerprint: {signing_key.fingerprint}" in result.stdout


@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_tampered_package_fails_verification(
    helm_name: str,
    request: pytest.FixtureRequest,
    signed_chart: Path,
    signing_key: SigningKey,
    tmp_path: Path,
) -> None:
    helm = request.getfixturevalue(helm_name)
    tampered = tmp_path / signed_chart.name
    unpacked = tmp_path / "unpacked"
    with tarfile.open(signed_chart) as original:
        original.extractall(unpacked, filter="data")
    values = unpacked / "etcd" / "values.yaml"
    values.write_text(values.read_text().replace("\nreplicas: 3\n", "\nreplicas: 1\n", 1))
    with tarfile.open(tampered, "w:gz") as copy:
        copy.add(unpacked / "etcd", arcname="etcd")
    shutil.copy(f"{signed_chart}.prov", f"{tampered}.prov")
    result = run([helm, "verify", str(tampered), "--keyring", str(signing_key.public_keyring)])
    assert result.returncode == 1
    assert f"sha256 sum does not match for {tampered.name}" in result.stderr


def test_package_signed_by_another_key_fails_verification(
    helm4: str, signed_chart: Path, tmp_path: Path
) -> None:
    stranger = make_signing_key(tmp_path / "stranger", name="someone else")
    result = run([helm4, "verify", str(signed_chart), "--keyring", str(stranger.public_keyring)])
    assert result.returncode == 1
    assert "signature made by unknown entity" in result.stderr


def test_ct_lint_is_clean(ct_binary: str, helm4: str, tmp_path: Path) -> None:
    """chart-testing as a chart repository's CI runs it: ct.yaml of the repository, helm,
    yamllint and yamale on PATH, its own Chart.yaml schema and yamllint rules (built beside it)."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "helm").symlink_to(helm4)
    venv_bin = Path(shutil.which("yamllint") or "yamllint").parent
    ct_etc = Path(ct_binary).resolve().parent
    env = {
        "PATH": f"{tools}:{venv_bin}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "KUBECONFIG": "/dev/null",
        "HELM_DATA_HOME": str(tmp_path / "helm" / "data"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm" / "config"),
        "HELM_CACHE_HOME": str(tmp_path / "helm" / "cache"),
    }
    result = run(
        [
            ct_binary, "lint", "--config", str(REPO / "ct.yaml"),
            "--lint-conf", str(ct_etc / "lintconf.yaml"),
            "--chart-yaml-schema", str(ct_etc / "chart_schema.yaml"),
        ],
        env=env,
        cwd=REPO,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert '✔︎ etcd => (version: "' + CHART_VERSION + '", path: "chart")' in output
    assert "All charts linted successfully" in output
