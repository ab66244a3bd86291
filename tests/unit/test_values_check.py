"""Values files against a JSON schema: every problem, its dotted key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from etcd_chart.values_check import coalesce, dotted, validate_files

DATA = Path(__file__).resolve().parents[1] / "data" / "postrender" / "values"
SCHEMA = DATA / "schema.json"
DEFAULTS = str(DATA / "defaults.yaml")


def check(tmp_path: Path, text: str, defaults: str = DEFAULTS) -> list[str]:
    values = tmp_path / "values.yaml"
    values.write_text(text)
    return [str(p) for p in validate_files([str(values)], SCHEMA, defaults)]


def test_valid_file(tmp_path: Path) -> None:
    assert check(tmp_path, "replicas: 5\ntls:\n  enabled: true\n  source: secrets\n") == []


def test_unknown_keys_name_the_closest_known_key(tmp_path: Path) -> None:
    file = tmp_path / "values.yaml"
    assert check(tmp_path, "replica: 3\ntls:\n  enabeld: true\nzzz: 1\n") == [
        f"{file}: replica: unknown key (did you mean replicas?)",
        f"{file}: zzz: unknown key (known keys here: clusterDomain, image, replicas, service, "
        "tls, tolerations)",
        f"{file}: tls.enabeld: unknown key (did you mean tls.enabled?)",
    ]


def test_every_problem_in_one_run(tmp_path: Path) -> None:
    file = tmp_path / "values.yaml"
    text = (
        "replicas: 0\nimage:\n  pullPolicy: Sometimes\n  repository: ''\n"
        "clusterDomain: Bad_Domain\n"
        "tolerations:\n  - key: a\n  - 3\nservice:\n  port: http\n"
    )
    assert check(tmp_path, text) == [
        f"{file}: clusterDomain: 'Bad_Domain' does not match '^[a-z0-9.-]+$' (use a value "
        "matching ^[a-z0-9.-]+$)",
        f"{file}: image.pullPolicy: 'Sometimes' is not one of ['Always', 'IfNotPresent', "
        '\'Never\'] (use one of: "Always", "IfNotPresent", "Never")',
        f"{file}: image.repository: '' should be non-empty (use at least 1 characters)",
        f"{file}: replicas: 0 is less than the minimum of 1 (use a number >= 1)",
        f"{file}: service.port: 'http' is not of type 'integer' (use a value of type integer)",
        f"{file}: tolerations[1]: 3 is not of type 'object' (use a value of type object)",
    ]


def test_null_removes_a_default_and_required_keys(tmp_path: Path) -> None:
    file = tmp_path / "values.yaml"
    assert check(tmp_path, "tls:\n  enabled: null\n") == [
        f"{file}: tls.enabled: required key is missing (add it)"
    ]


def test_without_defaults_and_not_a_mapping(tmp_path: Path) -> None:
    file = tmp_path / "values.yaml"
    assert check(tmp_path, "tls: {}\n", defaults="none") == [
        f"{file}: tls.enabled: required key is missing (add it)"
    ]
    assert check(tmp_path, "- a\n- b\n") == [
        f"{file}: (root): a values file must be a mapping, this one is a list (write `key: "
        "value` lines)"
    ]
    assert check(tmp_path, "replicas: [1\n") == [
        f"{file}: (root): not valid YAML: while parsing a flow sequence (fix the YAML syntax)"
    ]


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert check(tmp_path, "") == []


def test_coalesce_and_dotted() -> None:
    assert coalesce({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": None, "e": 3}, "d": [1]}) == {
        "a": {"c": 2, "e": 3},
        "d": [1],
    }
    assert dotted(["a", 0, "b", 2]) == "a[0].b[2]"


@pytest.fixture
def real_schema(repo: Path) -> Path:
    for candidate in (
        repo / "chart" / "values.schema.json",
        repo / "schemas" / "values.schema.json",
    ):
        if candidate.is_file():
            return candidate
    pytest.fail("the chart's values schema is missing", pytrace=False)


def test_real_schema_accepts_every_scenario_and_catches_a_typo(
    real_schema: Path, repo: Path, tmp_path: Path
) -> None:
    scenarios = sorted(str(p) for p in (repo / "chart" / "ci").glob("*-values.yaml"))
    assert scenarios
    assert validate_files(scenarios, real_schema) == []
    typo = tmp_path / "typo.yaml"
    typo.write_text("replica: 3\n")
    assert [str(p) for p in validate_files([str(typo)], real_schema)] == [
        f"{typo}: replica: unknown key (did you mean replicas?)"
    ]
