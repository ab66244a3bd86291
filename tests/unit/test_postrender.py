"""The post-renderer's core: member sets, peer lists, state decisions, each check, the stream."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_chart import yamlio
from etcd_chart.postrender import peers, state
from etcd_chart.postrender.core import Options, Outcome, post_render
from etcd_chart.postrender.members import ContainerSettings, member_set, stream_lookup
from etcd_chart.postrender.stream import parse
from etcd_chart.report import Report

DATA = Path(__file__).resolve().parents[1] / "data" / "postrender"
CHART_LIKE = (DATA / "chart-like.yaml").read_text()
DOCS_EXAMPLE = (DATA / "k8s-docs-etcd.yaml").read_text()


def objects(text: str) -> list[dict[str, Any]]:
    return [body for body in yaml.safe_load_all(text) if body]


def stream_of(bodies: list[dict[str, Any]], source: str = "") -> str:
    chunks = []
    for body in bodies:
        header = f"# Source: {source}\n" if source else ""
        chunks.append(f"---\n{header}{yamlio.dump(body)}")
    return "".join(chunks)


def find(bodies: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for body in bodies:
        if body["kind"] == kind and body["metadata"]["name"] == name:
            return body
    raise AssertionError(f"{kind}/{name} not found")


def chart_like(**changes: Any) -> list[dict[str, Any]]:
    bodies = objects(CHART_LIKE)
    sts = find(bodies, "StatefulSet", "etcd")
    for key, value in changes.items():
        sts["spec"][key] = value
    return bodies


def run(text: str, **options: Any) -> Outcome:
    return post_render(text, Options(**options))


def problems(outcome: Outcome) -> list[str]:
    return outcome.report.lines()


def config_of(output: str, name: str = "etcd-config") -> dict[str, Any]:
    body = find(objects(output), "ConfigMap", name)
    loaded: dict[str, Any] = json.loads(body["data"]["etcd.conf.json"])
    return loaded


def docs_args(output: str) -> list[str]:
    sts = find(objects(output), "StatefulSet", "etcd")
    args: list[str] = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, args
    return values[0]


# --- peer lists -------------------------------------------------------------------------------


@pytest.mark.parametrize("replicas", [1, 3, 5, 7])
def test_chart_peer_list_follows_replicas_and_keeps_the_domain(replicas: int) -> None:
    bodies = chart_like(replicas=replicas)
    if replicas == 1:  # as the chart: no budget for a single member
        bodies = [b for b in bodies if b["kind"] != "PodDisruptionBudget"]
    outcome = run(stream_of(bodies), cluster_domain="ignored.example")
    assert problems(outcome) == []
    expected = ",".join(
        f"etcd-{i}=http://etcd-{i}.etcd-headless.db.svc.example.org:2380" for i in range(replicas)
    )
    assert config_of(outcome.output)["initial-cluster"] == expected


@pytest.mark.parametrize("replicas", [3, 5])
def test_kubernetes_docs_statefulset_gets_the_exact_list(replicas: int) -> None:
    bodies = objects(DOCS_EXAMPLE)
    find(bodies, "StatefulSet", "etcd")["spec"]["replicas"] = replicas
    outcome = run(stream_of(bodies))
    assert problems(outcome) == []
    expected = ",".join(
        f"etcd-{i}=$(URI_SCHEME)://etcd-{i}.$(SERVICE_NAME):2380" for i in range(replicas)
    )
    assert flag(docs_args(outcome.output), "initial-cluster") == expected
    assert flag(docs_args(outcome.output), "initial-cluster-state") == "new"


def test_docs_example_as_given_passes_through_byte_for_byte() -> None:
    outcome = run(DOCS_EXAMPLE)
    assert problems(outcome) == []
    expected = DOCS_EXAMPLE[DOCS_EXAMPLE.index("---") :]
    assert outcome.output == expected


def test_peer_list_in_two_argument_flag_form() -> None:
    bodies = objects(DOCS_EXAMPLE)
    sts = find(bodies, "StatefulSet", "etcd")
    sts["spec"]["replicas"] = 5
    container = sts["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    index = next(i for i, a in enumerate(args) if a.startswith("--initial-cluster="))
    args[index : index + 1] = ["--initial-cluster", "x=http://x:2380"]
    outcome = run(stream_of(bodies))
    out_args = docs_args(outcome.output)
    position = out_args.index("--initial-cluster")
    assert out_args[position + 1] == ",".join(
        f"etcd-{i}=$(URI_SCHEME)://etcd-{i}.$(SERVICE_NAME):2380" for i in range(5)
    )


def test_peer_list_in_env_var_with_pod_name_variable() -> None:
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "kv", "namespace": "apps"},
        "spec": {
            "replicas": 3,
            "serviceName": "kv-peers",
            "selector": {"matchLabels": {"app": "kv"}},
            "template": {
                "metadata": {"labels": {"app": "kv"}},
                "spec": {
                    "containers": [
                        {
                            "name": "etcd",
                            "image": "registry.k8s.io/etcd:3.5.16-0",
                            "command": ["etcd"],
                            "env": [
                                {
                                    "name": "MY_POD",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                                {"name": "ETCD_NAME", "value": "$(MY_POD)"},
                                {
                                    "name": "ETCD_INITIAL_ADVERTISE_PEER_URLS",
                                    "value": "https://$(MY_POD).kv-peers:2380",
                                },
                                {"name": "ETCD_INITIAL_CLUSTER", "value": "stale"},
                            ],
                        }
                    ]
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kv-peers", "namespace": "apps"},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {"app": "kv"}},
    }
    outcome = run(stream_of([service, sts]), initial_cluster_state="existing")
    assert problems(outcome) == []
    env = find(objects(outcome.output), "StatefulSet", "kv")["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    values = {e["name"]: e.get("value") for e in env}
    assert values["ETCD_INITIAL_CLUSTER"] == (
        "kv-0=https://kv-0.kv-peers:2380,kv-1=https://kv-1.kv-peers:2380,"
        "kv-2=https://kv-2.kv-peers:2380"
    )
    assert values["ETCD_INITIAL_CLUSTER_STATE"] == "existing"


def config_file_stream(config_text: str, replicas: int = 3) -> str:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kv-conf", "namespace": "apps"},
        "data": {"etcd.yml": config_text},
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "kv", "namespace": "apps"},
        "spec": {
            "replicas": replicas,
            "serviceName": "kv",
            "selector": {"matchLabels": {"app": "kv"}},
            "template": {
                "metadata": {"labels": {"app": "kv"}},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "quay.io/coreos/etcd:v3.5.16",
                            "command": ["/usr/local/bin/etcd", "--config-file", "/conf/etcd.yml"],
                            "volumeMounts": [{"name": "conf", "mountPath": "/conf"}],
                        }
                    ],
                    "volumes": [{"name": "conf", "configMap": {"name": "kv-conf"}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kv", "namespace": "apps"},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {"app": "kv"}},
    }
    return stream_of([configmap, service, sts])


def test_peer_list_in_yaml_config_file_built_from_defaults() -> None:
    text = config_file_stream(
        "initial-cluster: ''\npeer-transport-security:\n  cert-file: /tls/peer.crt\n"
    )
    outcome = run(text, cluster_domain="corp.local")
    assert problems(outcome) == []
    body = find(objects(outcome.output), "ConfigMap", "kv-conf")
    config = yaml.safe_load(body["data"]["etcd.yml"])
    assert config["initial-cluster"] == ",".join(
        f"kv-{i}=https://kv-{i}.kv.apps.svc.corp.local:2380" for i in range(3)
    )


def test_peer_list_in_json_config_file_keeps_json() -> None:
    text = config_file_stream(
        '{"initial-cluster": "a=http://a:2380", "listen-peer-urls": "http://0.0.0.0:12380"}\n', 1
    )
    outcome = run(text)
    assert problems(outcome) == []
    body = find(objects(outcome.output), "ConfigMap", "kv-conf")
    assert body["data"]["etcd.yml"] == (
        '{"initial-cluster": "kv-0=http://kv-0.kv.apps.svc.cluster.local:12380", '
        '"listen-peer-urls": "http://0.0.0.0:12380"}\n'
    )


def test_default_form_uses_scheme_port_namespace_and_domain() -> None:
    documents = parse(config_file_stream("listen-peer-urls: https://0.0.0.0:7001\n"), Report())
    lookup = stream_lookup(documents, "default")
    member = member_set(documents[2], "default", lookup)
    assert member is not None
    assert peers.initial_cluster(member, "k8s.internal", count=2) == (
        "kv-0=https://kv-0.kv.apps.svc.k8s.internal:7001,"
        "kv-1=https://kv-1.kv.apps.svc.k8s.internal:7001"
    )


# --- initial-cluster-state ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "option", "live", "current", "expected"),
    [
        ("existing", "new", None, "new", ("existing", "annotation")),
        (None, "existing", None, "new", ("existing", "option")),
        (None, None, state.LiveFacts(True, False), "new", ("existing", "cluster")),
        (None, None, state.LiveFacts(False, True), "new", ("existing", "cluster")),
        (None, None, state.LiveFacts(False, False), "existing", ("new", "cluster")),
        (None, None, None, "new", ("new", "manifest")),
        (None, None, None, None, (None, "offline")),
    ],
)
def test_state_decisions(
    annotation: str | None,
    option: str | None,
    live: state.LiveFacts | None,
    current: str | None,
    expected: tuple[str | None, str],
) -> None:
    decision = state.decide(annotation, option, live, current, "etcd")
    assert (decision.state, decision.reason) == expected
    assert decision.refused == ""


def test_explicit_new_over_a_live_cluster_is_refused() -> None:
    decision = state.decide(None, "new", state.LiveFacts(False, True), "new", "etcd")
    assert decision.refused == (
        "initial-cluster-state new was asked for (option), but the cluster exists "
        "(ConfigMap etcd-cluster-record)"
    )


def test_state_annotation_and_option_reach_the_config() -> None:
    bodies = chart_like()
    find(bodies, "StatefulSet", "etcd")["metadata"]["annotations"][
        "etcd-chart/initial-cluster-state"
    ] = "existing"
    outcome = run(stream_of(bodies, "etcd/templates/all.yaml"), initial_cluster_state="new")
    assert config_of(outcome.output)["initial-cluster-state"] == "existing"
    outcome = run(stream_of(chart_like()), initial_cluster_state="existing")
    assert config_of(outcome.output)["initial-cluster-state"] == "existing"


def test_bad_state_annotation() -> None:
    bodies = chart_like()
    find(bodies, "StatefulSet", "etcd")["metadata"]["annotations"][
        "etcd-chart/initial-cluster-state"
    ] = "fresh"
    assert problems(run(stream_of(bodies, "t.yaml"))) == [
        "t.yaml: StatefulSet/etcd: metadata.annotations[etcd-chart/initial-cluster-state]: "
        "is 'fresh' (use new or existing)"
    ]


# --- checks ------------------------------------------------------------------------------------


def test_even_member_count_and_its_override() -> None:
    assert problems(run(stream_of(chart_like(replicas=4), "etcd/templates/statefulset.yaml"))) == [
        "etcd/templates/statefulset.yaml: StatefulSet/etcd: spec.replicas: 4 members: an even "
        "count tolerates 1 failed member(s), no more than 3 members do, and needs a larger "
        "quorum (3) (use an odd number such as 3 or 5, or annotate the StatefulSet "
        'etcd-chart/allow-even-replicas: "true")'
    ]
    bodies = chart_like(replicas=4)
    find(bodies, "StatefulSet", "etcd")["metadata"]["annotations"][
        "etcd-chart/allow-even-replicas"
    ] = "true"
    bodies = [b for b in bodies if b["kind"] != "PodDisruptionBudget"]
    assert problems(run(stream_of(bodies))) == []


@pytest.mark.parametrize(
    ("budget", "replicas", "expected"),
    [
        ({"maxUnavailable": 1}, 3, []),
        ({"maxUnavailable": 2}, 5, []),
        (
            {"maxUnavailable": 2},
            3,
            [
                "PodDisruptionBudget/etcd: spec.maxUnavailable: lets 2 of 3 members of "
                "StatefulSet/etcd go at once; quorum needs 2, so at most 1 may be down "
                "(set maxUnavailable to 1)"
            ],
        ),
        (
            {"maxUnavailable": "50%"},
            3,
            [
                "PodDisruptionBudget/etcd: spec.maxUnavailable: lets 2 of 3 members of "
                "StatefulSet/etcd go at once; quorum needs 2, so at most 1 may be down "
                "(set maxUnavailable to 1)"
            ],
        ),
        ({"minAvailable": 3}, 5, []),
        (
            {"minAvailable": 2},
            5,
            [
                "PodDisruptionBudget/etcd: spec.minAvailable: keeps only 2 of 5 members of "
                "StatefulSet/etcd; quorum needs 3 (set minAvailable to 3 or use "
                "maxUnavailable: 2)"
            ],
        ),
    ],
)
def test_disruption_budget_against_quorum(
    budget: dict[str, Any], replicas: int, expected: list[str]
) -> None:
    bodies = chart_like(replicas=replicas)
    pdb = find(bodies, "PodDisruptionBudget", "etcd")
    pdb["spec"] = {"selector": pdb["spec"]["selector"], **budget}
    assert problems(run(stream_of(bodies))) == expected


def test_budget_for_other_pods_is_ignored() -> None:
    bodies = chart_like()
    pdb = find(bodies, "PodDisruptionBudget", "etcd")
    pdb["spec"] = {"maxUnavailable": 3, "selector": {"matchLabels": {"app": "web"}}}
    assert problems(run(stream_of(bodies))) == []


def test_service_name_without_headless_service() -> None:
    bodies = [b for b in chart_like() if b["metadata"]["name"] != "etcd-headless"]
    assert problems(run(stream_of(bodies, "etcd/templates/x.yaml"))) == [
        "etcd/templates/x.yaml: StatefulSet/etcd: spec.serviceName: Service etcd-headless is not "
        "in the stream, so the members' DNS names (etcd-0.etcd-headless...) will not resolve "
        "(render a headless Service named etcd-headless (clusterIP: None, "
        "publishNotReadyAddresses: true) that selects the member pods)"
    ]


def test_service_that_is_not_headless_and_hides_unready_pods() -> None:
    bodies = chart_like()
    headless = find(bodies, "Service", "etcd-headless")
    del headless["spec"]["clusterIP"]
    headless["spec"]["publishNotReadyAddresses"] = False
    assert problems(run(stream_of(bodies))) == [
        "Service/etcd-headless: spec.clusterIP: StatefulSet/etcd names this Service in "
        "serviceName, but it is not headless, so members get no per-pod DNS names "
        "(set clusterIP: None)",
        "Service/etcd-headless: spec.publishNotReadyAddresses: members must resolve each other "
        "before they are ready, or a new cluster never forms "
        "(set publishNotReadyAddresses: true)",
    ]


def test_services_must_select_the_members_and_target_declared_ports() -> None:
    bodies = chart_like()
    find(bodies, "Service", "etcd")["spec"]["selector"] = {"app.kubernetes.io/name": "etcdd"}
    find(bodies, "Service", "etcd-headless")["spec"]["ports"][1]["targetPort"] = "peers"
    find(bodies, "Service", "etcd-headless")["spec"]["ports"][2]["targetPort"] = 9090
    assert problems(run(stream_of(bodies))) == [
        "Service/etcd-headless: spec.ports[1].targetPort: targets port 'peers', which no "
        "container of StatefulSet/etcd declares (named ports: client, metrics, peer) "
        "(use one of the container port names)",
        "Service/etcd-headless: spec.ports[2].targetPort: targets port 9090, which no container "
        "of StatefulSet/etcd declares (ports: 2379, 2380, 8080) (use a declared container port)",
        "Service/etcd: spec.selector: selects {'app.kubernetes.io/name': 'etcdd'}, which does not "
        "match the pods of StatefulSet/etcd (labels {'app.kubernetes.io/name': 'etcd', "
        "'app.kubernetes.io/instance': 'etcd', 'app.kubernetes.io/component': 'member'}) "
        "(use the StatefulSet's selector labels)",
    ]


def test_ports_in_urls_must_agree() -> None:
    bodies = chart_like()
    configmap = find(bodies, "ConfigMap", "etcd-config")
    config = json.loads(configmap["data"]["etcd.conf.json"])
    config["initial-advertise-peer-urls"] = config["initial-advertise-peer-urls"].replace(
        ":2380", ":2390"
    )
    config["listen-client-urls"] = "http://$(POD_IP_URL_HOST):4001"
    configmap["data"]["etcd.conf.json"] = json.dumps(config, indent=2)
    assert problems(run(stream_of(bodies))) == [
        "ConfigMap/etcd-config: data[etcd.conf.json].initial-advertise-peer-urls: advertises "
        "port 2390, but etcd listens on 2380 (listen-peer-urls) (advertise the port etcd "
        "listens on)",
        "ConfigMap/etcd-config: data[etcd.conf.json].advertise-client-urls: advertises port "
        "2379, but etcd listens on 4001 (listen-client-urls) (advertise the port etcd listens on)",
        "ConfigMap/etcd-config: data[etcd.conf.json].listen-client-urls: etcd listens on port "
        "4001, which the etcd container does not declare (ports: 2379, 2380, 8080) (declare it "
        "in the container's ports, or listen on a declared port)",
    ]


def test_an_added_container_running_etcd_is_not_taken_for_the_member() -> None:
    """A user's init container or sidecar may run the etcd image (a restore, a backup; the
    chart's initContainers and sidecars values): the container named etcd is the member."""
    bodies = chart_like()
    spec = find(bodies, "StatefulSet", "etcd")["spec"]["template"]["spec"]
    restore = {
        "name": "restore",
        "image": "gcr.io/etcd-development/etcd:v3.7.3",
        "command": ["/usr/local/bin/etcd", "--version"],
        "ports": [{"containerPort": 9000}],
    }
    spec["initContainers"].append(restore)
    spec["containers"].append({**restore, "name": "backup"})
    text = stream_of(bodies)
    assert problems(run(text)) == []
    documents = parse(text, Report())
    statefulset = next(d for d in documents if d.kind == "StatefulSet")
    member = member_set(statefulset, "default", stream_lookup(documents, "default"))
    assert member is not None and member.container_path == "spec.template.spec.containers[0]"


def test_removed_etcd_settings_and_member_name() -> None:
    bodies = chart_like()
    configmap = find(bodies, "ConfigMap", "etcd-config")
    config = json.loads(configmap["data"]["etcd.conf.json"])
    config["experimental-initial-corrupt-check"] = True
    config["name"] = "etcd"
    configmap["data"]["etcd.conf.json"] = json.dumps(config, indent=2)
    assert problems(run(stream_of(bodies))) == [
        "ConfigMap/etcd-config: data[etcd.conf.json].experimental-initial-corrupt-check: this "
        "setting no longer exists in etcd 3.7 (every experimental-* flag and enable-v2 were "
        "removed) (use its stable name, or drop it)",
        "ConfigMap/etcd-config: data[etcd.conf.json].name: member name is 'etcd', not the pod "
        "name, so it cannot match the peer list (variables bound to metadata.name: $(POD_NAME)) "
        "(set it to the pod name, e.g. $(POD_NAME) with POD_NAME from fieldRef metadata.name)",
    ]


def test_missing_chart_config() -> None:
    bodies = [b for b in chart_like() if b["kind"] != "ConfigMap"]
    assert problems(run(stream_of(bodies))) == [
        "StatefulSet/etcd: metadata.annotations[etcd-chart/config]: cannot read the etcd "
        "settings: ConfigMap etcd-config is not in the stream (render the configuration into a "
        "ConfigMap in the same release, or pass --initial-cluster as a flag or "
        "ETCD_INITIAL_CLUSTER as an env var)"
    ]


def tls_stream(dns_names: list[str], max_members: str | None = None) -> str:
    bodies = chart_like()
    configmap = find(bodies, "ConfigMap", "etcd-config")
    config = json.loads(configmap["data"]["etcd.conf.json"])
    for key in ("initial-advertise-peer-urls", "listen-peer-urls", "initial-cluster"):
        config[key] = config[key].replace("http://", "https://")
    config["peer-transport-security"] = {
        "cert-file": "/etc/etcd/tls/peer/tls.crt",
        "key-file": "/etc/etcd/tls/peer/tls.key",
    }
    configmap["data"]["etcd.conf.json"] = json.dumps(config, indent=2)
    sts = find(bodies, "StatefulSet", "etcd")
    if max_members:
        sts["metadata"]["annotations"]["etcd-chart/max-members"] = max_members
    pod = sts["spec"]["template"]["spec"]
    pod["containers"][0]["volumeMounts"].append({"name": "peer", "mountPath": "/etc/etcd/tls/peer"})
    pod["volumes"].append({"name": "peer", "secret": {"secretName": "etcd-peer-tls"}})
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "etcd-peer", "namespace": "db"},
        "spec": {
            "secretName": "etcd-peer-tls",
            "dnsNames": dns_names,
            "issuerRef": {"name": "ca", "kind": "Issuer"},
        },
    }
    return stream_of([*bodies, certificate], "etcd/templates/all.yaml")


def test_certificate_names_cover_every_member() -> None:
    names = [f"etcd-{i}.etcd-headless.db.svc.example.org" for i in range(3)]
    assert problems(run(tls_stream(names))) == []
    assert problems(run(tls_stream(["*.etcd-headless.db.svc.example.org"], "7"))) == []
    assert problems(run(tls_stream(names, "5"))) == [
        "etcd/templates/all.yaml: Certificate/etcd-peer: spec.dnsNames: the certificate in Secret "
        "etcd-peer-tls, used by StatefulSet/etcd, does not cover "
        "etcd-3.etcd-headless.db.svc.example.org, etcd-4.etcd-headless.db.svc.example.org "
        "(members up to 5) (add these names (or a wildcard for the headless Service domain); "
        "set tls.maxMembers to the largest member count it may grow to (the chart writes it into "
        "the StatefulSet annotation etcd-chart/max-members))"
    ]


def test_duplicate_objects() -> None:
    bodies = chart_like()
    duplicate = copy.deepcopy(find(bodies, "Service", "etcd"))
    text = stream_of(bodies, "etcd/templates/svc.yaml") + stream_of([duplicate], "extra/svc.yaml")
    assert problems(run(text)) == [
        "extra/svc.yaml: Service/etcd: metadata.name: duplicate: Service db/etcd is also "
        "rendered by etcd/templates/svc.yaml (give one of them another name, or render it once)"
    ]


def test_same_name_in_another_group_or_namespace_is_no_duplicate() -> None:
    bodies = chart_like()
    other_ns = copy.deepcopy(find(bodies, "Service", "etcd"))
    other_ns["metadata"]["namespace"] = "other"
    assert problems(run(stream_of([*bodies, other_ns]))) == []


def test_not_an_etcd_stream_and_empty_stream_and_bad_yaml() -> None:
    web = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}}
    assert problems(run(stream_of([web]))) == [
        "stdin: no etcd member set among 1 objects (ConfigMap): this post-renderer is for etcd "
        "releases (use this post-renderer only for etcd releases (the etcd chart, or an etcd "
        "StatefulSet whose container runs etcd with --initial-cluster); run Helm without "
        "--post-renderer otherwise)"
    ]
    assert problems(run("---\n# Source: etcd/templates/empty.yaml\n")) == [
        "stdin: the input stream is empty: there are no manifests to post-render (pipe a rendered "
        "release into it, e.g. `helm template etcd ./chart | etcd-chart post-render`; Helm "
        "passes no manifests when every template renders empty)"
    ]
    bad = "---\n# Source: etcd/templates/a.yaml\nkind: ConfigMap\nmetadata:\n  name: [x\n"
    assert problems(run(bad)) == [
        "etcd/templates/a.yaml: not valid YAML at line 6 of the stream: did not find expected "
        "',' or ']' (fix the template that renders it; `helm template` shows the text)"
    ]


def test_document_without_kind() -> None:
    text = stream_of(chart_like()) + "---\napiVersion: v1\nmetadata:\n  name: lost\n"
    assert problems(run(text)) == [
        "document 6: ?/lost: missing kind (every Kubernetes object needs apiVersion, kind and "
        "metadata.name)"
    ]


# --- the stream --------------------------------------------------------------------------------


def test_output_is_deterministic_and_unchanged_documents_are_verbatim() -> None:
    text = stream_of(chart_like(replicas=5), "etcd/templates/all.yaml")
    first, second = run(text).output, run(text).output
    assert first == second
    untouched = text.split("---\n")[3]  # the headless Service, as it came in
    assert "---\n" + untouched in first


def test_helm4_hooks_pass_through_with_annotations() -> None:
    hook = (
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: etcd-scale-down\n  namespace: db\n"
        "  annotations:\n    helm.sh/hook: pre-upgrade,pre-rollback\n"
        "    postrenderer.helm.sh/postrender-filename: 'etcd/templates/hook.yaml'\n"
        "spec:\n  template:\n    spec:\n      containers: []\n"
    )
    text = stream_of(chart_like()) + "---\n" + hook
    outcome = run(text)
    assert problems(outcome) == []
    assert outcome.output.endswith("---\n" + hook)


def test_helm4_filename_annotation_names_the_template_in_messages() -> None:
    bodies = chart_like(replicas=2)
    sts = find(bodies, "StatefulSet", "etcd")
    sts["metadata"]["annotations"]["postrenderer.helm.sh/postrender-filename"] = (
        "etcd/templates/statefulset.yaml"
    )
    bodies = [b for b in bodies if b["kind"] != "PodDisruptionBudget"]
    lines = problems(run(stream_of(bodies)))
    assert lines[0].startswith("etcd/templates/statefulset.yaml: StatefulSet/etcd: spec.replicas:")


def test_container_settings_add_a_missing_state_flag_next_to_the_peer_list() -> None:
    bodies = objects(DOCS_EXAMPLE)
    sts = find(bodies, "StatefulSet", "etcd")
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    args.remove("--initial-cluster-state=new")
    documents = parse(stream_of(bodies), Report())
    member = member_set(documents[1], "default", stream_lookup(documents, "default"))
    assert member is not None and isinstance(member.settings, ContainerSettings)
    assert member.settings.set("initial-cluster-state", "existing") is True
    args = member.settings.container["args"]
    position = next(i for i, a in enumerate(args) if a.startswith("--initial-cluster="))
    assert args[position + 1] == "--initial-cluster-state=existing"


def test_skimmed_documents_still_refuse_unsafe_yaml() -> None:
    unsafe = (
        "---\n# Source: etcd/templates/evil.yaml\napiVersion: v1\nkind: ConfigMap\n"
        "metadata:\n  name: evil\ndata:\n  x: !!python/object/apply:os.system [true]\n"
    )
    lines = problems(run(stream_of(chart_like()) + unsafe))
    assert len(lines) == 1
    assert lines[0].startswith("etcd/templates/evil.yaml: not valid YAML at line ")
    assert "could not determine a constructor for the tag" in lines[0]
