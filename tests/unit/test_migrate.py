"""`etcd-chart migrate-values`: each Bitnami key's way into this chart's values, or its reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_chart.migrate import migrate

DATA = Path(__file__).resolve().parents[1] / "data" / "bitnami"


TAG = {"image": {"tag": "3.5.16-debian-12-r0"}}


def converted(source: dict[str, Any], release: str = "etcd") -> tuple[dict[str, Any], dict]:
    """(values, {bitnami key: reason}) for `source`, with an image tag unless it gives one."""
    result = migrate({**TAG, **source}, release)
    return result.values, dict(result.notes)


def test_replicas_and_the_etcd_release_of_the_image_tag() -> None:
    values, notes = converted({"replicaCount": 5, "image": {"tag": "3.6.16-debian-12-r1"}})
    assert values == {"replicas": 5, "image": {"tag": "v3.6.16"}}
    assert notes == {}
    values, notes = converted({"replicaCount": 4, "image": {"tag": "latest"}})
    assert values == {"replicas": 4, "allowEvenReplicas": True}
    assert (
        notes["image.tag"] == "'latest' names no etcd release (3.x.y): this chart's default is used"
    )
    assert notes["replicaCount"].startswith("4 is even: carried with allowEvenReplicas")
    result = migrate({})
    values, notes = result.values, dict(result.notes)
    assert values == {"replicas": 1}
    assert notes == {
        "replicaCount": "unset: Bitnami's default is 1 member, kept as replicas: 1",
        "image.tag": "unset: this chart's default etcd release is used",
    }


def test_bitnami_image_and_registry_are_not_carried() -> None:
    source = {
        "replicaCount": 3,
        "image": {"registry": "mirror.example", "repository": "bitnami/etcd", "tag": "3.5.16"},
        "global": {"imageRegistry": "mirror.example", "imagePullSecrets": ["a", {"name": "b"}]},
    }
    values, notes = converted(source)
    assert values["global"] == {"imageRegistry": "mirror.example"}
    assert values["imagePullSecrets"] == [{"name": "a"}, {"name": "b"}]
    assert list(notes) == ["image.registry"]
    assert "set global.imageRegistry" in notes["image.registry"]


def test_etcd_variables_become_flags_and_owned_ones_are_said() -> None:
    source = {
        "replicaCount": 3,
        "maxProcs": 4,
        "extraEnvVars": [
            {"name": "ETCD_MAX_TXN_OPS", "value": "256"},
            {"name": "ETCD_INITIAL_CLUSTER_STATE", "value": "new"},
            {"name": "ETCD_HEARTBEAT_INTERVAL", "valueFrom": {"configMapKeyRef": {}}},
            {"name": "HTTP_PROXY", "value": "http://proxy:3128"},
            {"name": "ETCD_QUOTA_BACKEND_BYTES", "value": "4294967296"},
        ],
    }
    values, notes = converted(source)
    assert values["extraFlags"] == ["--max-txn-ops=256"]
    assert values["config"] == {"quotaBackendBytes": 4294967296}
    assert values["extraEnvVars"] == [
        {"name": "HTTP_PROXY", "value": "http://proxy:3128"},
        {"name": "GOMAXPROCS", "value": "4"},
    ]
    assert notes == {
        "extraEnvVars[1]": "ETCD_INITIAL_CLUSTER_STATE: the chart sets --initial-cluster-state"
        " itself",
        "extraEnvVars[2]": "ETCD_HEARTBEAT_INTERVAL takes its value from elsewhere; etcd ignores"
        " ETCD_* variables here: set the option in extraConfig",
    }


def test_max_procs_alone_and_beside_a_gomaxprocs_variable() -> None:
    values, notes = converted({"replicaCount": 3, "maxProcs": 2})
    assert values["extraEnvVars"] == [{"name": "GOMAXPROCS", "value": "2"}]
    assert notes == {}
    given = {
        "replicaCount": 3,
        "maxProcs": 2,
        "extraEnvVars": [{"name": "GOMAXPROCS", "value": "4"}],
    }
    values, notes = converted(given)
    assert values["extraEnvVars"] == [{"name": "GOMAXPROCS", "value": "4"}]
    assert notes == {"maxProcs": "extraEnvVars sets GOMAXPROCS already, and wins"}


def test_a_configuration_file_splits_into_config_and_extra_config() -> None:
    configuration = (
        "quota-backend-bytes: 4294967296\nlog-level: debug\nname: mine\n"
        "experimental-initial-corrupt-check: true\nmax-request-bytes: 10485760\n"
    )
    values, notes = converted({"replicaCount": 3, "configuration": configuration})
    assert values["config"] == {"quotaBackendBytes": 4294967296, "logLevel": "debug"}
    assert values["extraConfig"] == {"max-request-bytes": 10485760}
    assert notes == {
        "configuration.name": "the chart sets this etcd key itself",
        "configuration.experimental-initial-corrupt-check": "not valid in etcd 3.7 (experimental"
        " keys and v2 were removed)",
    }
    _, notes = converted({"replicaCount": 3, "configuration": "a: [b"})
    assert notes["configuration"].startswith("not YAML (")


@pytest.mark.parametrize(
    ("auth", "expected", "noted"),
    [
        ({"rbac": {"create": False}}, {}, []),
        (
            {"rbac": {"create": True}},
            {
                "rbac": {
                    "enabled": True,
                    "rootPassword": {"existingSecret": "orders-etcd", "key": "etcd-root-password"},
                },
                "token": {
                    "type": "jwt",
                    "jwt": {
                        "existingSecret": "orders-etcd-jwt-token",
                        "privateKeyKey": "jwt-token.pem",
                        "publicKeyKey": "",
                    },
                },
            },
            ["auth.rbac.rootPassword", "auth.token.privateKey.existingSecret"],
        ),
        (
            {
                "rbac": {"create": True, "existingSecret": "root-pw"},
                "token": {"type": "jwt", "privateKey": {"existingSecret": "jwt", "filename": "k"}},
            },
            {
                "rbac": {
                    "enabled": True,
                    "rootPassword": {"existingSecret": "root-pw", "key": "etcd-root-password"},
                },
                "token": {
                    "type": "jwt",
                    "jwt": {"existingSecret": "jwt", "privateKeyKey": "k", "publicKeyKey": ""},
                },
            },
            [],
        ),
        (
            {
                "rbac": {
                    "create": True,
                    "existingSecret": "root-pw",
                    "existingSecretPasswordKey": "pw",
                },
                "token": {"enabled": False},
            },
            {
                "rbac": {
                    "enabled": True,
                    "rootPassword": {"existingSecret": "root-pw", "key": "pw"},
                },
                "token": {"type": "simple"},
            },
            [],
        ),
    ],
    ids=["off", "generated-secrets", "own-secrets", "simple-tokens"],
)
def test_auth(auth: dict[str, Any], expected: dict[str, Any], noted: list[str]) -> None:
    values, notes = converted({"replicaCount": 3, "auth": auth}, release="orders")
    assert values.get("auth", {}) == expected
    assert list(notes) == noted


def test_a_plain_root_password_never_goes_into_values() -> None:
    values, notes = converted(
        {"replicaCount": 3, "auth": {"rbac": {"create": True, "rootPassword": "s3cret"}}}
    )
    assert "s3cret" not in yaml.safe_dump(values)
    assert "s3cret" not in str(notes)
    assert (
        "the password you gave in auth.rbac.rootPassword is in it"
        in notes["auth.rbac.rootPassword"]
    )


def test_tls_on_one_side_turns_it_on_for_both_and_says_so() -> None:
    values, notes = converted({"replicaCount": 3, "auth": {"client": {"secureTransport": True}}})
    assert values["tls"] == {"enabled": True}
    assert notes == {
        "auth.peer.secureTransport": "TLS is on for clients and peers together here (tls.enabled)"
    }


@pytest.mark.parametrize(
    ("replicas", "pdb", "expected", "noted"),
    [
        (
            3,
            {"create": True, "minAvailable": "51%"},
            {"maxUnavailable": None, "minAvailable": 2},
            [],
        ),
        (5, {"create": True, "minAvailable": 4}, {"maxUnavailable": None, "minAvailable": 4}, []),
        (5, {"create": True, "minAvailable": "20%"}, None, ["pdb.minAvailable"]),
        (5, {"create": True, "maxUnavailable": 2}, {"maxUnavailable": 2}, []),
        (3, {"create": False}, {"enabled": False}, []),
    ],
    ids=["percent", "count", "below-quorum", "max-unavailable", "off"],
)
def test_pdb(replicas: int, pdb: dict[str, Any], expected: Any, noted: list[str]) -> None:
    values, notes = converted({"replicaCount": replicas, "pdb": pdb})
    assert values.get("pdb") == expected
    assert list(notes) == noted


def test_scheduling_storage_network_policy_and_probes() -> None:
    source = {
        "replicaCount": 3,
        "podAntiAffinityPreset": "",
        "global": {"storageClass": "standard"},
        "persistence": {"size": "16Gi"},
        "persistentVolumeClaimRetentionPolicy": {"enabled": True, "whenScaled": "Delete"},
        "networkPolicy": {
            "enabled": True,
            "allowExternal": False,
            "ingressNSMatchLabels": {"team": "a"},
        },
        "startupProbe": {"enabled": True, "failureThreshold": 30, "successThreshold": 1},
        "readinessProbe": {"successThreshold": 2},
    }
    values, notes = converted(source)
    assert values["podAntiAffinity"] == {"preset": "none"}
    assert values["persistence"] == {
        "storageClass": "standard",
        "retentionPolicy": {"whenScaled": "Delete"},
        "size": "16Gi",
    }
    assert values["networkPolicy"] == {
        "client": {"restrict": True, "namespaceSelectors": [{"matchLabels": {"team": "a"}}]},
        "enabled": True,
    }
    assert values["probes"] == {
        "startup": {"enabled": True, "failureThreshold": 30},
        "readiness": {"successThreshold": 2},
    }
    assert notes == {}


def test_sections_are_said_once_when_on_and_unknown_keys_are_named() -> None:
    source = {
        "replicaCount": 3,
        "metrics": {"enabled": False, "podMonitor": {"enabled": True, "interval": "30s"}},
        "volumePermissions": {"enabled": False, "image": {"tag": "12"}},
        "replicaCout": 5,
        "service": {"type": "ClusterIP", "sessionAffinity": "ClientIP"},
    }
    _, notes = converted(source)
    assert list(notes) == ["service.sessionAffinity", "metrics", "replicaCout"]
    assert notes["replicaCout"] == "not a value of the Bitnami etcd chart that this command knows"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etcd_chart.cli", "migrate-values", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_writes_valid_values_and_lists_what_it_left_out(tmp_path: Path) -> None:
    result = run_cli(str(DATA / "production-values.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "# Converted from the Bitnami etcd values production-values.yaml"
    )
    assert yaml.safe_load(result.stdout)["replicas"] == 3
    last = result.stderr.splitlines()[-1]
    assert last == "etcd-chart migrate-values: 42 values written, 8 not carried over (listed above)"


def test_cli_writes_nothing_when_the_result_is_not_valid(tmp_path: Path) -> None:
    source = tmp_path / "bitnami.yaml"
    source.write_text("replicaCount: 3\nlogLevel: chatty\n")
    output = tmp_path / "values.yaml"
    result = run_cli(str(source), "--output", str(output))
    assert (result.returncode, result.stdout) == (1, "")
    assert "converted values: config.logLevel:" in result.stderr
    assert not output.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read"),
        ("- a\n- b\n", "a values file is a mapping, this one is a list"),
        ("a: [b\n", "not valid YAML"),
    ],
    ids=["missing", "a-list", "broken-yaml"],
)
def test_cli_unreadable_input_exits_2(tmp_path: Path, text: str | None, message: str) -> None:
    source = tmp_path / "bitnami.yaml"
    if text is not None:
        source.write_text(text)
    result = run_cli(str(source))
    assert (result.returncode, result.stdout) == (2, "")
    assert message in result.stderr and str(source) in result.stderr
