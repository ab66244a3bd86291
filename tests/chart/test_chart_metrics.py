"""Metrics and alerts: the ServiceMonitor, PodMonitor, PrometheusRule and Grafana dashboard.

The monitors and the rule are checked against the Prometheus Operator's v1 CRD schemas
(tests/data/prometheus-operator), the rules with a real promtool (`check rules`, and `test rules`
with one case that fires each alert and one that does not), and the dashboard's queries with
promtool as recording rules. The metric names both use are looked up in the /metrics of a real
etcd of every minor the chart runs.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartrender import Objects, monitoring_problems, render, render_error
from etcd_versions import etcd_program

ALL_ON = (
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.grafanaDashboard.enabled=true",
)
SELECTOR = 'job="etcd",namespace="etcd"'
# The labels a monitor gives a member's series (release etcd in namespace etcd).
MEMBER = {"job": "etcd", "namespace": "etcd", "pod": "etcd-0", "instance": "10.0.0.10:8080"}
CLUSTER = "the etcd cluster etcd in namespace etcd"
ALERTS = [
    "EtcdNoLeader",
    "EtcdFrequentLeaderChanges",
    "EtcdFailedProposals",
    "EtcdSlowWalFsync",
    "EtcdSlowBackendCommit",
    "EtcdDatabaseNearQuota",
    "EtcdNoSpaceAlarm",
    "EtcdMembersDown",
    "EtcdQuorumLost",
]
# Every etcd metric the alerts and the dashboard read; `up` is Prometheus' own.
ETCD_METRICS = {
    "etcd_server_has_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_failed_total",
    "etcd_disk_wal_fsync_duration_seconds_bucket",
    "etcd_disk_backend_commit_duration_seconds_bucket",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_server_quota_backend_bytes",
    "etcd_debugging_server_alarms",
}
# etcd 3.5 has no alarm gauge (it came with 3.6): EtcdNoSpaceAlarm never fires there, and
# EtcdDatabaseNearQuota is what warns.
ONLY_FROM_3_6 = {"etcd_debugging_server_alarms"}


def _series(name: str, **labels: str) -> str:
    return name + "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


def _member(pod: str, **extra: str) -> dict[str, str]:
    index = pod.rsplit("-", 1)[1]
    return {**MEMBER, "pod": pod, "instance": f"10.0.0.1{index}:8080", **extra}


def _histogram(name: str, bucket: str, per_minute: int) -> dict[str, str]:
    """A histogram whose every observation lands in the bucket from 0.001 to `bucket` seconds
    (histogram_quantile interpolates linearly inside it)."""
    return {
        _series(f"{name}_bucket", **MEMBER, le="0.001"): "0x30",
        _series(f"{name}_bucket", **MEMBER, le=bucket): f"0+{per_minute}x30",
        _series(f"{name}_bucket", **MEMBER, le="+Inf"): f"0+{per_minute}x30",
    }


@dataclass(frozen=True)
class AlertCase:
    """Input series (series -> promtool values, one sample a minute) that fire an alert at
    `eval_time` with `labels` and `description`, and series that leave it quiet."""

    alert: str
    eval_time: str
    firing: dict[str, str]
    quiet: dict[str, str]
    labels: dict[str, str]
    summary: str
    description: str


CASES = [
    AlertCase(
        "EtcdNoLeader",
        "5m",
        firing={_series("etcd_server_has_leader", **MEMBER): "0x10"},
        quiet={_series("etcd_server_has_leader", **MEMBER): "1x10"},
        labels={**MEMBER, "severity": "critical"},
        summary="An etcd member has no leader.",
        description=f"Member etcd-0 of {CLUSTER} has no leader: it serves no writes and no "
        "linearizable reads.",
    ),
    AlertCase(
        "EtcdFrequentLeaderChanges",
        "20m",
        # Two members see the same changes: one alert for the cluster.
        firing={
            _series("etcd_server_leader_changes_seen_total", **_member("etcd-0")): "0+1x30",
            _series("etcd_server_leader_changes_seen_total", **_member("etcd-1")): "0+1x30",
        },
        quiet={_series("etcd_server_leader_changes_seen_total", **MEMBER): "0x10 1x10 2x10"},
        labels={"job": "etcd", "namespace": "etcd", "severity": "warning"},
        summary="etcd leadership changes often.",
        description="The etcd cluster etcd in namespace etcd changed leaders 15 times within 15m: "
        "check disk latency, CPU throttling and the network between members.",
    ),
    AlertCase(
        "EtcdFailedProposals",
        "20m",
        firing={_series("etcd_server_proposals_failed_total", **MEMBER): "0+1x30"},
        quiet={_series("etcd_server_proposals_failed_total", **MEMBER): "0+0.25x30"},
        labels={**MEMBER, "severity": "warning"},
        summary="etcd proposals are failing.",
        description=f"15 raft proposals failed on member etcd-0 of {CLUSTER} within 15m.",
    ),
    AlertCase(
        "EtcdSlowWalFsync",
        "20m",
        firing=_histogram("etcd_disk_wal_fsync_duration_seconds", "1.024", 60),
        quiet=_histogram("etcd_disk_wal_fsync_duration_seconds", "0.008", 60),
        labels={**MEMBER, "severity": "warning"},
        summary="etcd WAL fsync is slow.",
        description="The 0.99 quantile of WAL fsync durations on member etcd-0 of "
        f"{CLUSTER} is 1.014s: the disk is too slow for etcd.",
    ),
    AlertCase(
        "EtcdSlowBackendCommit",
        "20m",
        firing=_histogram("etcd_disk_backend_commit_duration_seconds", "0.512", 60),
        quiet=_histogram("etcd_disk_backend_commit_duration_seconds", "0.032", 60),
        labels={**MEMBER, "severity": "warning"},
        summary="etcd backend commits are slow.",
        description="The 0.99 quantile of backend commit durations on member etcd-0 of "
        f"{CLUSTER} is 506.9ms: the disk is too slow for etcd.",
    ),
    AlertCase(
        "EtcdDatabaseNearQuota",
        "15m",
        firing={
            _series("etcd_mvcc_db_total_size_in_bytes", **MEMBER): "1800000000x20",
            _series("etcd_server_quota_backend_bytes", **MEMBER): "2000000000x20",
        },
        quiet={
            _series("etcd_mvcc_db_total_size_in_bytes", **MEMBER): "1500000000x20",
            _series("etcd_server_quota_backend_bytes", **MEMBER): "2000000000x20",
        },
        labels={**MEMBER, "severity": "warning"},
        summary="etcd database is close to its quota.",
        description=f"The database of member etcd-0 of {CLUSTER} uses 90% of its quota; at "
        "100% etcd raises NOSPACE and refuses writes. Compact and defragment, or raise "
        "config.quotaBackendBytes.",
    ),
    AlertCase(
        "EtcdNoSpaceAlarm",
        "1m",
        # Every member reports every member's alarms: one alert per alarmed member.
        firing={
            _series(
                "etcd_debugging_server_alarms",
                **_member(pod),
                alarm_type="NOSPACE",
                server_id="8e9e05c52164694d",
            ): "1x5"
            for pod in ("etcd-0", "etcd-1", "etcd-2")
        },
        quiet={
            _series(
                "etcd_debugging_server_alarms",
                **MEMBER,
                alarm_type="CORRUPT",
                server_id="8e9e05c52164694d",
            ): "1x5",
        },
        labels={
            "job": "etcd",
            "namespace": "etcd",
            "server_id": "8e9e05c52164694d",
            "severity": "critical",
        },
        summary="etcd refuses writes: NOSPACE alarm.",
        description=f"A NOSPACE alarm is active for member ID 8e9e05c52164694d of {CLUSTER}: "
        "the cluster refuses writes. Compact, defragment, then run `etcdctl alarm disarm`.",
    ),
    AlertCase(
        "EtcdMembersDown",
        "10m",
        firing={
            _series("up", **_member("etcd-0")): "1x20",
            _series("up", **_member("etcd-1")): "1x20",
            _series("up", **_member("etcd-2")): "0x20",
        },
        quiet={_series("up", **_member(f"etcd-{i}")): "1x20" for i in range(3)},
        labels={"severity": "warning"},
        summary="etcd members are down.",
        description=f"Only 2 of the 3 members of {CLUSTER} are up.",
    ),
    AlertCase(
        "EtcdQuorumLost",
        "10m",
        firing={
            _series("up", **_member("etcd-0")): "1x20",
            _series("up", **_member("etcd-1")): "0x20",
            _series("up", **_member("etcd-2")): "0x20",
        },
        quiet={
            _series("up", **_member("etcd-0")): "1x20",
            _series("up", **_member("etcd-1")): "1x20",
            _series("up", **_member("etcd-2")): "0x20",
        },
        labels={"severity": "critical"},
        summary="etcd has lost its quorum.",
        description=f"Only 1 of the 3 members of {CLUSTER} are up, fewer than the quorum of 2: "
        "the cluster serves no writes.",
    ),
]


def _rule(objects: Objects, name: str = "etcd") -> dict[str, Any]:
    body: dict[str, Any] = objects[("PrometheusRule", name)]
    return body


def _alerts(objects: Objects) -> dict[str, dict[str, Any]]:
    (group,) = _rule(objects)["spec"]["groups"]
    return {rule["alert"]: rule for rule in group["rules"] if "alert" in rule}


def _write_rules(objects: Objects, directory: Path) -> Path:
    """The PrometheusRule's spec as a Prometheus rules file, as the operator hands it over."""
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(_rule(objects)["spec"], sort_keys=False))
    return path


def _promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def _test_file(case: AlertCase, rules: Path) -> Path:
    def group(series: dict[str, str], firing: bool) -> dict[str, Any]:
        expected = (
            [
                {
                    "exp_labels": case.labels,
                    "exp_annotations": {
                        "summary": case.summary,
                        "description": case.description,
                    },
                }
            ]
            if firing
            else []
        )
        return {
            "interval": "1m",
            "input_series": [{"series": name, "values": values} for name, values in series.items()],
            "alert_rule_test": [
                {"eval_time": case.eval_time, "alertname": case.alert, "exp_alerts": expected}
            ],
        }

    path = rules.parent / f"test-{case.alert}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "rule_files": [rules.name],
                "evaluation_interval": "1m",
                "tests": [group(case.firing, True), group(case.quiet, False)],
            },
            sort_keys=False,
        )
    )
    return path


@pytest.fixture(scope="module")
def default_rules(helm4: str) -> Objects:
    return render(helm4, *ALL_ON)


@pytest.fixture
def rules_dir(tmp_path: Path, default_rules: Objects) -> Path:
    _write_rules(default_rules, tmp_path)
    return tmp_path


# --- what is rendered ---------------------------------------------------------------------


def test_nothing_is_rendered_by_default(helm: str) -> None:
    kinds = {kind for kind, _ in render(helm)}
    assert kinds.isdisjoint({"ServiceMonitor", "PodMonitor", "PrometheusRule"})
    assert ("ConfigMap", "etcd-dashboard") not in render(helm)


def test_service_monitor_scrapes_the_headless_service(helm: str) -> None:
    objects = render(helm, *ALL_ON)
    monitor = objects[("ServiceMonitor", "etcd")]
    assert monitoring_problems(monitor) == []
    assert monitor["spec"] == {
        "namespaceSelector": {"matchNames": ["etcd"]},
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/name": "etcd",
                "app.kubernetes.io/instance": "etcd",
                "etcd-chart/service": "headless",
            }
        },
        "endpoints": [
            {
                "port": "metrics",
                "scheme": "http",
                "path": "/metrics",
                "relabelings": [{"action": "replace", "targetLabel": "job", "replacement": "etcd"}],
            }
        ],
    }
    # Only the headless Service carries the label the monitor selects, and it has the port.
    labelled = [
        name
        for (kind, name), body in objects.items()
        if kind == "Service" and body["metadata"]["labels"].get("etcd-chart/service") == "headless"
    ]
    assert labelled == ["etcd-headless"]
    ports = objects[("Service", "etcd-headless")]["spec"]["ports"]
    assert {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"} in ports


def test_monitor_settings_and_namespace(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    settings = {
        "enabled": True,
        "namespace": "monitoring",
        "labels": {"release": "kube-prometheus-stack"},
        "annotations": {"note": "mine"},
        "interval": "30s",
        "scrapeTimeout": "10s",
        "honorLabels": True,
        "relabelings": [
            {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
        ],
        "metricRelabelings": [
            {"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"},
        ],
    }
    values.write_text(yaml.safe_dump({"metrics": {"podMonitor": settings}}))
    monitor = render(helm, "-f", str(values), release="orders", namespace="team-a")[
        ("PodMonitor", "orders-etcd")
    ]
    assert monitoring_problems(monitor) == []
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["annotations"] == {"note": "mine"}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "etcd",
        "app.kubernetes.io/instance": "orders",
        "app.kubernetes.io/component": "member",
    }
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {
            "port": "metrics",
            "scheme": "http",
            "path": "/metrics",
            "interval": "30s",
            "scrapeTimeout": "10s",
            "honorLabels": True,
            "relabelings": [
                {"action": "replace", "targetLabel": "job", "replacement": "orders-etcd"},
                settings["relabelings"][0],
            ],
            "metricRelabelings": settings["metricRelabelings"],
        }
    ]


def test_the_schema_check_catches_a_wrong_field(helm4: str) -> None:
    """The CRD check is strict: a field the operator does not know is reported."""
    monitor = render(helm4, *ALL_ON)[("ServiceMonitor", "etcd")]
    monitor["spec"]["endpoints"][0]["scrapeEvery"] = "30s"
    monitor["spec"]["endpoints"][0]["interval"] = "half a minute"
    problems = monitoring_problems(monitor)
    assert len(problems) == 2, problems
    assert any("spec.endpoints.0.interval: 'half a minute' does not match" in p for p in problems)
    assert any("'scrapeEvery' was unexpected" in p for p in problems)


def test_rule_object_and_alert_list(helm: str) -> None:
    objects = render(helm, *ALL_ON)
    assert monitoring_problems(_rule(objects)) == []
    assert list(_alerts(objects)) == ALERTS
    assert _alerts(objects)["EtcdQuorumLost"]["expr"] == f"(sum(up{{{SELECTOR}}}) or vector(0)) < 2"


def test_rule_follows_replicas_thresholds_and_labels(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "replicas": 5,
                "metrics": {
                    "selector": 'job="etcd-main"',
                    "prometheusRule": {
                        "enabled": True,
                        "namespace": "monitoring",
                        "labels": {"release": "kube-prometheus-stack"},
                        "alertLabels": {"team": "storage"},
                        "alerts": {
                            "databaseNearQuota": {"thresholdPercent": 95, "severity": "critical"},
                            "leaderChanges": {"enabled": False},
                            "noSpaceAlarm": {"for": "2m"},
                        },
                        "additionalRules": [{"record": "etcd:up:sum", "expr": "sum(up)"}],
                    },
                },
            }
        )
    )
    objects = render(helm, "-f", str(values))
    rule = _rule(objects)
    assert monitoring_problems(rule) == []
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = _alerts(objects)
    assert "EtcdFrequentLeaderChanges" not in alerts
    assert alerts["EtcdMembersDown"]["expr"] == '(sum(up{job="etcd-main"}) or vector(0)) < 5'
    assert alerts["EtcdQuorumLost"]["expr"] == '(sum(up{job="etcd-main"}) or vector(0)) < 3'
    near = alerts["EtcdDatabaseNearQuota"]
    assert near["expr"].endswith(" > 95")
    assert near["labels"] == {"severity": "critical", "team": "storage"}
    assert alerts["EtcdNoSpaceAlarm"]["for"] == "2m"
    assert rule["spec"]["groups"][0]["rules"][-1] == {"record": "etcd:up:sum", "expr": "sum(up)"}


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values,message",
    [
        (
            {"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}},
            "  - metrics.podMonitor.enabled: set together with metrics.serviceMonitor.enabled, so "
            "Prometheus would scrape every member twice",
        ),
        (
            {
                "metrics": {
                    "serviceMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "1m"}
                }
            },
            "  - metrics.serviceMonitor.scrapeTimeout: 1m is longer than "
            "metrics.serviceMonitor.interval (15s), which the Prometheus Operator refuses.",
        ),
        (
            {
                "networkPolicy": {"metrics": {"restrict": True}},
                "metrics": {"podMonitor": {"enabled": True}},
            },
            "  - metrics.podMonitor.enabled: networkPolicy.metrics.restrict with no selector lets "
            "no pod reach the metrics port",
        ),
        (
            {"metrics": {"grafanaDashboard": {"enabled": True}}},
            "  - metrics.selector: required for the PrometheusRule and the Grafana dashboard "
            "without the chart's ServiceMonitor or PodMonitor, since their queries select "
            'job="etcd"',
        ),
    ],
    ids=["both-monitors", "timeout-over-interval", "metrics-port-closed", "no-job-to-select"],
)
def test_contradictions_are_refused(
    helm: str, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    assert message in render_error(helm, "-f", str(path))


def test_equal_timeout_and_interval_and_own_selector_are_accepted(
    helm: str, tmp_path: Path
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "metrics": {
                    "selector": 'job="etcd"',
                    "serviceMonitor": {
                        "enabled": True,
                        "interval": "1m30s",
                        "scrapeTimeout": "90s",
                    },
                    "prometheusRule": {"enabled": True},
                }
            }
        )
    )
    assert ("ServiceMonitor", "etcd") in render(helm, "-f", str(path))


# --- promtool -----------------------------------------------------------------------------


def test_promtool_checks_the_rules(promtool: str, rules_dir: Path) -> None:
    result = _promtool(promtool, "check", "rules", "rules.yaml", cwd=rules_dir)
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    assert result.stdout == f"Checking rules.yaml\n  SUCCESS: {len(ALERTS)} rules found\n\n"


def test_every_alert_has_a_case() -> None:
    assert [case.alert for case in CASES] == ALERTS


@pytest.mark.parametrize("case", CASES, ids=[case.alert for case in CASES])
def test_alert_fires_and_stays_quiet(promtool: str, rules_dir: Path, case: AlertCase) -> None:
    test_file = _test_file(case, rules_dir / "rules.yaml")
    result = _promtool(promtool, "test", "rules", test_file.name, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "  SUCCESS" in result.stdout


def test_a_broken_rule_fails_its_case(
    promtool: str, default_rules: Objects, tmp_path: Path
) -> None:
    """The promtool cases can fail: with EtcdNoLeader's comparison inverted, its case fails."""
    rules = _write_rules(default_rules, tmp_path)
    rules.write_text(
        rules.read_text().replace("etcd_server_has_leader{", "1 - etcd_server_has_leader{")
    )
    test_file = _test_file(CASES[0], rules)
    result = _promtool(promtool, "test", "rules", test_file.name, cwd=tmp_path)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "FAILED:" in output and "alertname: EtcdNoLeader, time: 5m" in output


def test_a_rule_that_does_not_parse_fails_the_check(
    promtool: str, default_rules: Objects, tmp_path: Path
) -> None:
    rules = _write_rules(default_rules, tmp_path)
    rules.write_text(rules.read_text().replace("== 0", "== == 0", 1))
    result = _promtool(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "FAILED:" in result.stderr and "parse error" in result.stderr


# --- the Grafana dashboard ----------------------------------------------------------------


def _dashboard(objects: Objects, name: str = "etcd-dashboard") -> tuple[dict[str, Any], Any]:
    configmap = objects[("ConfigMap", name)]
    (text,) = configmap["data"].values()
    return configmap, json.loads(text)


def _queries(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _metric_names(expressions: list[str]) -> set[str]:
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", "\n".join(expressions)))


def test_dashboard_configmap(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "metrics": {
                    "podMonitor": {"enabled": True},
                    "grafanaDashboard": {
                        "enabled": True,
                        "namespace": "monitoring",
                        "sidecarLabel": "dashboards",
                        "sidecarLabelValue": "etcd",
                        "labels": {"team": "storage"},
                        "annotations": {"grafana_folder": "etcd"},
                    },
                }
            }
        )
    )
    objects = render(helm, "-f", str(values), release="orders", namespace="team-a")
    configmap, dashboard = _dashboard(objects, "orders-etcd-dashboard")
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["dashboards"] == "etcd"
    assert configmap["metadata"]["labels"]["team"] == "storage"
    assert "grafana_dashboard" not in configmap["metadata"]["labels"]
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "etcd"}
    assert list(configmap["data"]) == ["team-a-orders-etcd.json"]
    assert dashboard["title"] == "etcd / orders-etcd (team-a)"
    assert re.fullmatch(r"etcd-[0-9a-f]{20}", dashboard["uid"])
    assert all('job="orders-etcd",namespace="team-a"' in query for query in _queries(dashboard))


def test_dashboard_defaults_and_own_selector(helm: str, tmp_path: Path) -> None:
    configmap, dashboard = _dashboard(render(helm, *ALL_ON))
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "metrics": {
                    "selector": 'job=~"etcd|kube-etcd"',
                    "grafanaDashboard": {"enabled": True},
                }
            }
        )
    )
    _, own = _dashboard(render(helm, "-f", str(values)))
    assert own["uid"] == dashboard["uid"]
    assert all('job=~"etcd|kube-etcd"}' in query for query in _queries(own)), _queries(own)


def test_dashboard_queries_are_valid_promql(
    helm4: str, promtool: str, tmp_path: Path, default_rules: Objects
) -> None:
    _, dashboard = _dashboard(default_rules)
    queries = _queries(dashboard)
    assert len(queries) == 13
    assert _metric_names(queries) == ETCD_METRICS | {"up"}
    # Grafana fills in $__rate_interval; promtool checks each query as a recording rule.
    rules = [
        {"record": f"dashboard:query_{index}", "expr": query.replace("$__rate_interval", "5m")}
        for index, query in enumerate(queries)
    ]
    (tmp_path / "dashboard.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    result = _promtool(promtool, "check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout
    broken = [{"record": "dashboard:broken", "expr": queries[0].replace("(", "((", 1)}]
    (tmp_path / "broken.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": broken}]})
    )
    assert _promtool(promtool, "check", "rules", "broken.yaml", cwd=tmp_path).returncode == 1


def test_alerts_and_dashboard_read_the_same_metrics(default_rules: Objects) -> None:
    _, dashboard = _dashboard(default_rules)
    expressions = [rule["expr"] for rule in _alerts(default_rules).values()]
    assert _metric_names(expressions) == _metric_names(_queries(dashboard))


# --- the metric names exist in real etcd ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        answer: dict[str, Any] = json.load(response)
        return answer


@pytest.fixture
def etcd_metrics(etcd_version: str) -> Iterator[tuple[str, set[str]]]:
    """The metric names a real etcd of each minor exposes once it has written a key and raised
    a NOSPACE alarm (raised by hand through the JSON gateway's maintenance API)."""
    client, peer, metrics = _free_port(), _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as data:
        process = subprocess.Popen(
            [
                etcd_program(etcd_version, "etcd"),
                f"--data-dir={data}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                f"--listen-metrics-urls=http://127.0.0.1:{metrics}",
                "--log-level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{client}/v3"
            deadline = time.monotonic() + 30
            while True:
                try:
                    status = _post(f"{base}/maintenance/status", {})
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.2)
            _post(f"{base}/kv/put", {"key": "a2V5", "value": "dmFsdWU="})
            member = status["header"]["member_id"]
            _post(
                f"{base}/maintenance/alarm",
                {"action": "ACTIVATE", "memberID": member, "alarm": "NOSPACE"},
            )
            with urllib.request.urlopen(  # noqa: S310 - loopback
                f"http://127.0.0.1:{metrics}/metrics", timeout=10
            ) as response:
                text = response.read().decode()
        finally:
            process.terminate()
            process.wait(timeout=30)
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] not in "#"}
    yield etcd_version, names


def test_metrics_exist_in_real_etcd(etcd_metrics: tuple[str, set[str]]) -> None:
    version, names = etcd_metrics
    missing = ETCD_METRICS - names
    if version.startswith("3.5."):
        assert missing == ONLY_FROM_3_6
    else:
        assert missing == set()
