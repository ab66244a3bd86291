"""`etcd-chart validate` refuses every value set the chart's own validation refuses.

The cases are in the order of the `$errors = append` lines of `etcd.validateValues`
(chart/templates/_helpers.tpl); a rule added to the chart without a case here fails
`test_every_rule_of_the_chart_has_a_case`. Each case is rendered by real helm (the chart must
refuse it, naming the field in its value errors or its schema errors) and validated by
`etcd-chart validate` as a process (exit 1, nothing on stdout, the same field named).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
HELPERS = CHART / "templates" / "_helpers.tpl"

TLS = {"tls": {"enabled": True}}
SECRETS = {n: f"etcd-{n}" for n in ("server", "peer", "client", "agent")}
RBAC = {"enabled": True, "rootPassword": {"existingSecret": "root-pw"}}
TOKEN = {"token": {"type": "simple"}}
USER = {"name": "app", "password": {"existingSecret": "app-pw"}}
WEBUI: dict[str, dict[str, object]] = {"webui": {"enabled": True}}
UI_PASSWORD = {"password": {"existingSecret": "webui-pw"}}
UI_ROOT = {"name": "root", **UI_PASSWORD}
UI_USER = {"webui": {"enabled": True, "etcdUser": UI_PASSWORD}}
S3 = {"enabled": True, "endpoint": "https://s3.local", "bucket": "b1", "existingSecret": "keys"}
BACKUP = {"backup": {"enabled": True, "pvc": {"enabled": True}}}
BACKUP_USER = {**BACKUP["backup"], "etcdUser": UI_PASSWORD}
BACKUP_RBAC = {"backup": BACKUP_USER}
PVC_FILE = {"claim": "", "path": "etcd-20261207T120000Z-r9.db"}
RESTORE_PVC = {"snapshot": {"source": "pvc", "pvc": {**PVC_FILE, "claim": "c"}}}

# (field the chart names, values); the field with the index or key the case uses.
CASES: list[tuple[str, dict[str, object]]] = [
    ("fullnameOverride/release name", {"fullnameOverride": "a" * 48}),
    ("replicas", {"replicas": 0}),
    ("replicas", {"replicas": 4}),
    ("pdb.minAvailable", {"pdb": {"minAvailable": 2}}),
    ("pdb.maxUnavailable", {"pdb": {"maxUnavailable": None}}),
    ("pdb.minAvailable", {"pdb": {"maxUnavailable": None, "minAvailable": 4}}),
    ("pdb.minAvailable", {"replicas": 5, "pdb": {"maxUnavailable": None, "minAvailable": 2}}),
    ("pdb.maxUnavailable", {"pdb": {"enabled": True, "maxUnavailable": 2}}),
    ("pdb.maxUnavailable", {"pdb": {"maxUnavailable": 0}}),
    ("tls.maxMembers", {"replicas": 11, **TLS}),
    ("tls.existingSecrets.server", {"tls": {"enabled": True, "source": "existingSecrets"}}),
    (
        "webui.tls.existingSecret",
        {
            "tls": {"enabled": True, "source": "existingSecrets", "existingSecrets": SECRETS},
            "webui": {"enabled": True},
        },
    ),
    (
        "tls.certManager.privateKey.size",
        {
            "tls": {
                "enabled": True,
                "certManager": {"privateKey": {"algorithm": "RSA", "size": 256}},
            }
        },
    ),
    (
        "tls.certManager.privateKey.size",
        {
            "tls": {
                "enabled": True,
                "certManager": {"privateKey": {"algorithm": "ECDSA", "size": 2048}},
            }
        },
    ),
    ("tls.source", {"tls": {"source": "vault"}}),
    ("auth.rbac.rootPassword.existingSecret", {"auth": {"rbac": {"enabled": True}, **TOKEN}}),
    ("auth.token.type", {"auth": {"token": {"type": "oauth"}}}),
    ("auth.token.type", {"auth": {"rbac": RBAC}}),
    ("auth.token.jwt.existingSecret", {"auth": {"token": {"type": "jwt"}}}),
    ("auth.rbac.users[1].name", {"auth": {"rbac": {**RBAC, "users": [USER, USER]}, **TOKEN}}),
    (
        "auth.rbac.users[0].password.existingSecret",
        {"auth": {"rbac": {**RBAC, "users": [{"name": "app", "password": {}}]}, **TOKEN}},
    ),
    (
        "auth.rbac.users[0].name",
        {"auth": {"rbac": {**RBAC, "users": [{**USER, "name": "root"}]}, **TOKEN}},
    ),
    (
        "auth.rbac.users[0].roles",
        {"auth": {"rbac": {**RBAC, "users": [{**USER, "roles": ["reader"]}]}, **TOKEN}},
    ),
    ("auth.rbac.users/auth.rbac.roles", {"auth": {"rbac": {"users": [USER]}}}),
    ("config.electionTimeout", {"config": {"heartbeatInterval": 200, "electionTimeout": 500}}),
    ("clusterRecord.enabled", {"clusterRecord": {"enabled": False}}),
    ("persistence.wal.enabled", {"persistence": {"enabled": False, "wal": {"enabled": True}}}),
    ("webui.kind", {"webui": {"kind": "phpmyadmin"}}),
    ("webui.auth.enabled", {"webui": {"enabled": True, "kind": "e3w"}}),
    ("webui.etcdUser.password.existingSecret", {"auth": {"rbac": RBAC, **TOKEN}, **WEBUI}),
    (
        "webui.etcdUser.name",
        {"auth": {"rbac": RBAC, **TOKEN}, "webui": {**WEBUI["webui"], "etcdUser": UI_ROOT}},
    ),
    (
        "auth.rbac.users[0].name",
        {"auth": {"rbac": {**RBAC, "users": [{**USER, "name": "webui"}]}, **TOKEN}, **UI_USER},
    ),
    (
        "auth.rbac.roles[0].name",
        {
            "auth": {"rbac": {**RBAC, "roles": [{"name": "webui", "permissions": []}]}, **TOKEN},
            **UI_USER,
        },
    ),
    ("service.nodePorts", {"service": {"type": "ClusterIP", "nodePorts": {"client": 30379}}}),
    ("service.externalTrafficPolicy", {"service": {"externalTrafficPolicy": "Local"}}),
    (
        "service.nodePorts.metrics",
        {"service": {"type": "LoadBalancer", "nodePorts": {"metrics": 30080}}},
    ),
    ("ports", {"ports": {"client": 2379, "peer": 2379}}),
    ("extraConfig.data-dir", {"extraConfig": {"data-dir": "/elsewhere"}}),
    (
        "extraConfig.experimental-initial-corrupt-check",
        {"extraConfig": {"experimental-initial-corrupt-check": True}},
    ),
    ("extraFlags[0]", {"extraFlags": ["--initial-cluster-state=new"]}),
    ("extraFlags[0]", {"extraFlags": ["--enable-v2=true"]}),
    ("podLabels.app.kubernetes.io/name", {"podLabels": {"app.kubernetes.io/name": "db"}}),
    ("commonLabels.helm.sh/chart", {"commonLabels": {"helm.sh/chart": "mine"}}),
    ("podLabels.tier", {"commonLabels": {"tier": "a"}, "podLabels": {"tier": "b"}}),
    ("networkPolicy.extraEgress", {"networkPolicy": {"extraEgress": [{"ports": [{"port": 53}]}]}}),
    ("persistence.size", {"config": {"quotaBackendBytes": 8589934592}}),
    ("extraEnvVars[0].name", {"extraEnvVars": [{"name": "ETCD_DATA_DIR", "value": "/x"}]}),
    ("extraEnvVars[0].name", {"extraEnvVars": [{"name": "ETCDCTL_ENDPOINTS", "value": "x"}]}),
    ("extraEnvVars[1].name", {"extraEnvVars": [{"name": "A", "value": "1"}] * 2}),
    ("extraVolumes[0].name", {"extraVolumes": [{"name": "data", "emptyDir": {}}]}),
    ("extraVolumes[1].name", {"extraVolumes": [{"name": "backup", "emptyDir": {}}] * 2}),
    ("extraVolumeMounts[0].name", {"extraVolumeMounts": [{"name": "x", "mountPath": "/x"}]}),
    (
        "extraVolumeMounts[0].mountPath",
        {
            "extraVolumes": [{"name": "x", "emptyDir": {}}],
            "extraVolumeMounts": [{"name": "x", "mountPath": "/etc/etcd/mine"}],
        },
    ),
    ("sidecars[0].name", {"sidecars": [{"name": "etcd", "image": "busybox"}]}),
    (
        "sidecars[0].name",
        {
            "initContainers": [{"name": "side", "image": "busybox"}],
            "sidecars": [{"name": "side", "image": "busybox"}],
        },
    ),
    (
        "initContainers[0].ports",
        {"initContainers": [{"name": "i", "image": "b", "ports": [{"containerPort": 2380}]}]},
    ),
    ("commonAnnotations.etcd-chart/config", {"commonAnnotations": {"etcd-chart/config": "x"}}),
    (
        "serviceAccount.labels.team",
        {"commonLabels": {"team": "a"}, "serviceAccount": {"labels": {"team": "b"}}},
    ),
    ("service.clusterIP", {"service": {"clusterIP": "None"}}),
    ("service.loadBalancerClass", {"service": {"loadBalancerClass": "example.com/lb"}}),
    ("extraDeploy[0]", {"extraDeploy": ["a: [b"]}),
    ("extraDeploy[0]", {"extraDeploy": [{"apiVersion": "v1", "kind": "ConfigMap"}]}),
    (
        "metrics.podMonitor.enabled",
        {"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}},
    ),
    (
        "metrics.serviceMonitor.scrapeTimeout",
        {
            "metrics": {
                "serviceMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "1m"}
            }
        },
    ),
    (
        "metrics.podMonitor.enabled",
        {
            "networkPolicy": {"metrics": {"restrict": True}},
            "metrics": {"podMonitor": {"enabled": True}},
        },
    ),
    ("metrics.selector", {"metrics": {"prometheusRule": {"enabled": True}}}),
    ("backup.enabled", {"backup": {"enabled": True}}),
    ("backup.s3.endpoint", {"backup": {"enabled": True, "s3": {**S3, "endpoint": "s3.local"}}}),
    ("backup.s3.bucket", {"backup": {"enabled": True, "s3": {**S3, "bucket": "B"}}}),
    ("backup.s3.existingSecret", {"backup": {"enabled": True, "s3": {**S3, "existingSecret": ""}}}),
    ("backup.etcdUser.password.existingSecret", {"auth": {"rbac": RBAC, **TOKEN}, **BACKUP}),
    (
        "backup.etcdUser.name",
        {"auth": {"rbac": RBAC, **TOKEN}, "backup": {**BACKUP_USER, "etcdUser": UI_ROOT}},
    ),
    (
        "backup.etcdUser.name",
        {
            "auth": {"rbac": RBAC, **TOKEN},
            "webui": {"enabled": True, "etcdUser": {**UI_PASSWORD, "name": "ops"}},
            "backup": {**BACKUP_USER, "etcdUser": {**UI_PASSWORD, "name": "ops"}},
        },
    ),
    (
        "auth.rbac.users[0].name",
        {"auth": {"rbac": {**RBAC, "users": [{**USER, "name": "backup"}]}, **TOKEN}, **BACKUP_RBAC},
    ),
    (
        "backup.tls.existingSecret",
        {
            "tls": {"enabled": True, "source": "existingSecrets", "existingSecrets": SECRETS},
            **BACKUP,
        },
    ),
    ("restore.snapshot.pvc.claim", {"restore": {"snapshot": {"source": "pvc", "pvc": PVC_FILE}}}),
    (
        "restore.snapshot.pvc.path",
        {"restore": {"snapshot": {"source": "pvc", "pvc": {"claim": "c", "path": "/abs.db"}}}},
    ),
    ("restore.snapshot.s3.key", {"restore": {"snapshot": {"source": "s3"}}, "backup": {"s3": S3}}),
    (
        "restore.snapshot.source",
        {"persistence": {"wal": {"enabled": True}}, "restore": RESTORE_PVC},
    ),
    ("restore.snapshot.source", {"initialClusterState": "existing", "restore": RESTORE_PVC}),
]


def _rule_fields() -> list[str]:
    """The field each `$errors = append` of the chart's validation helper names, in order."""
    text = HELPERS.read_text()
    body = text[text.index('define "etcd.validateValues"') :]
    body = body[: body.index("{{- end -}}\n{{- if $errors -}}")]
    fields = re.findall(r'append \$errors \(?(?:printf )?"([^:"]+):', body)
    assert fields, "no rules found in etcd.validateValues"
    return fields


def _matches(template_field: str, field: str) -> bool:
    pattern = re.escape(template_field).replace("%d", r"\d+").replace("%s", r"[A-Za-z0-9./_-]+")
    return re.fullmatch(pattern, field) is not None


def test_every_rule_of_the_chart_has_a_case() -> None:
    fields = _rule_fields()
    assert len(fields) == len(CASES), (
        f"the chart has {len(fields)} rules and this test {len(CASES)} cases: "
        "add a case for every new rule, in the helper's order"
    )
    for template_field, (field, _) in zip(fields, CASES, strict=True):
        assert _matches(template_field, field), (template_field, field)


def _files(tmp_path: Path) -> list[tuple[str, Path]]:
    found = []
    for index, (field, values) in enumerate(CASES):
        path = tmp_path / f"rule-{index:02d}.yaml"
        path.write_text(yaml.safe_dump(values))
        found.append((field, path))
    return found


def _chart_names(stderr: str, field: str) -> bool:
    """helm's refusal names the field: a value-errors line, or a schema error at its path.

    Schema errors name the path as `a.b.0.c: ... is required` (Helm 3) or
    `at '/a/b/0/c'` / `at '/a/b/0': missing property 'c'` (Helm 4).
    """
    if f"  - {field}: " in stderr:
        return True
    parts = re.sub(r"\[(\d+)\]", r".\1", field).split(".")
    parent, last = ".".join(parts[:-1]), parts[-1]
    helm3 = (f"- {'.'.join(parts)}: ", f"- {parent}: {last} is required")
    helm4 = (f"at '/{'/'.join(parts)}'", f"at '/{'/'.join(parts[:-1])}': missing property '{last}'")
    return any(text in stderr for text in (*helm3, *helm4))


@pytest.mark.slow
def test_validate_refuses_what_the_chart_refuses(tmp_path: Path, helm: str) -> None:
    files = _files(tmp_path)
    for field, path in files:
        rendered = subprocess.run(
            [helm, "template", "etcd", str(CHART), "-f", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert rendered.returncode == 1, (field, rendered.stderr)
        assert _chart_names(rendered.stderr, field), (field, rendered.stderr)
    result = subprocess.run(
        [sys.executable, "-m", "etcd_chart.cli", "validate", *(str(p) for _, p in files)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=tmp_path,
        timeout=600,
    )
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    for field, path in files:
        named = [line for line in lines if line.startswith(f"{path}: {field}: ")]
        assert named, (field, [line for line in lines if line.startswith(f"{path}: ")])
    assert all(line.startswith(str(tmp_path)) for line in lines), result.stderr


def test_valid_values_pass_the_rules(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"replicas": 4, "allowEvenReplicas": True, **TLS}))
    result = subprocess.run(
        [sys.executable, "-m", "etcd_chart.cli", "validate", str(good)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{good}: valid\n", "")


def test_without_helm_it_says_what_is_missing(tmp_path: Path) -> None:
    values = tmp_path / "v.yaml"
    values.write_text("replicas: 4\n")
    env = dict(os.environ, PATH=str(tmp_path / "empty"), ETCD_CHART_CACHE=str(tmp_path / "none"))
    result = subprocess.run(
        [sys.executable, "-m", "etcd_chart.cli", "validate", str(values)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "etcd-chart validate: helm (3 or 4) is needed on PATH to run the chart's cross-field "
        "rules; install it, or pass --schema-only to check the schema alone\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "etcd_chart.cli", "validate", "--schema-only", str(values)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{values}: valid\n", "")
