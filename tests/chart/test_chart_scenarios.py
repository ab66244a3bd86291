"""Every scenario under chart/ci renders with Helm 3 and Helm 4, validates and lints clean."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chartrender import (
    CHART,
    SCENARIOS,
    etcd_config,
    helm_template,
    monitoring_problems,
    parse,
    peer_list,
    render_text,
    scenario_file,
)

KUBERNETES_VERSION = "1.31"
CERT_MANAGER_KINDS = ("Certificate", "Issuer", "ClusterIssuer")
# (release, namespace) pairs: names, tokens and DNS names all derive from them.
PLACES = [("etcd", "etcd"), ("orders", "team-a")]


@functools.cache
def _kubernetes_problem(document: str) -> str | None:
    """kubernetes-validate --strict for one object (cached: Helm 3 and 4 render the same bytes)."""
    body = json.loads(document)
    try:
        kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(part) for part in err.path)
        return f"{path}: {err.message}"
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as err:
        return f"no schema: {err.message}"
    return None


@functools.cache
def _crd_validator(shared: Path, kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((shared / "crd-schemas" / f"cert-manager.io_v1_{kind}.json").read_text())
    return jsonschema.Draft7Validator(schema)


def _validate(objects: dict[tuple[str, str], dict[str, Any]], shared: Path) -> list[str]:
    problems = []
    for (kind, name), body in objects.items():
        if body["apiVersion"].startswith("cert-manager.io/"):
            assert kind in CERT_MANAGER_KINDS, f"{kind}/{name}: no schema for this kind"
            for error in _crd_validator(shared, kind).iter_errors(body):
                path = ".".join(str(part) for part in error.absolute_path)
                problems.append(f"{kind}/{name}: {path}: {error.message}")
            continue
        if body["apiVersion"].startswith("monitoring.coreos.com/"):
            problems.extend(monitoring_problems(body))
            continue
        problem = _kubernetes_problem(json.dumps(body, sort_keys=True))
        if problem:
            problems.append(f"{kind}/{name}: {problem}")
    return problems


@pytest.mark.parametrize("release,namespace", PLACES, ids=[f"{r}-in-{n}" for r, n in PLACES])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_renders_valid_objects(
    helm: str, shared_dir: Path, scenario: str, release: str, namespace: str
) -> None:
    text = render_text(helm, "-f", scenario_file(scenario), release=release, namespace=namespace)
    objects = parse(text)
    assert [kind for kind, _ in objects].count("StatefulSet") == 1
    assert _validate(objects, shared_dir) == []
    for body in objects.values():
        assert body["metadata"]["namespace"] == namespace, f"{body['kind']} without namespace"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_same_bytes_from_helm3_and_helm4(helm3: str, helm4: str, scenario: str) -> None:
    assert render_text(helm3, "-f", scenario_file(scenario)) == render_text(
        helm4, "-f", scenario_file(scenario)
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_peer_list_is_exact(helm: str, scenario: str) -> None:
    values = yaml.safe_load(Path(scenario_file(scenario)).read_text()) or {}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    fullname = values.get("fullnameOverride") or "etcd"
    replicas = values.get("replicas", defaults["replicas"])
    domain = values.get("clusterDomain", defaults["clusterDomain"])
    peer = values.get("ports", {}).get("peer", defaults["ports"]["peer"])
    scheme = "https" if values.get("tls", {}).get("enabled") else "http"
    config = etcd_config(parse(render_text(helm, "-f", scenario_file(scenario))), fullname)
    assert config["initial-cluster"] == peer_list(fullname, replicas, "etcd", domain, scheme, peer)
    assert config["initial-cluster-state"] == "new"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_lints_clean(helm: str, scenario: str) -> None:
    result = subprocess.run(
        [helm, "lint", "--strict", str(CHART), "-f", scenario_file(scenario)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def test_scenarios_cover_the_required_set() -> None:
    required = {
        "default",
        "one-member",
        "five-members",
        "seven-members",
        "custom-names",
        "cluster-domain",
        "nodeport",
        "no-persistence",
        "separate-wal",
        "secure",
        "existing-secrets",
        "webui",
        "monitoring",
    }
    assert required <= set(SCENARIOS)


def test_default_scenario_is_empty() -> None:
    assert yaml.safe_load(Path(scenario_file("default")).read_text()) == {}


def test_templates_end_without_newline() -> None:
    """Helm 4 keeps a template's trailing newline, Helm 3 trims it: without one both agree."""
    offenders = [
        path.name
        for path in sorted((CHART / "templates").glob("*.yaml"))
        if path.read_text().endswith("\n")
    ]
    assert offenders == []


def test_render_fails_without_output_on_error(helm: str) -> None:
    code, out, err = helm_template(helm, "--set", "replicas=2")
    assert (code, out) == (1, "")
    assert "replicas: 2 is even" in err
