"""The NetworkPolicy the chart renders by default, judged by who can reach whom.

A small evaluator applies the rendered NetworkPolicies the way Kubernetes defines them (a pod
selected by no policy of a direction is open in that direction; otherwise a connection needs a
matching rule on the sender's egress and on the receiver's ingress) to the pods the chart runs
(members, the scale-down hook, the web UI) and to pods around them: an application in the release
namespace, a pod labelled for client access, Prometheus in `monitoring`, kube-dns, a NodeLocal
DNSCache address and the API server's endpoint.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest
from chartrender import Objects, notes, render, scenario_file

NS = "etcd"
SELECTOR = {"app.kubernetes.io/name": "etcd", "app.kubernetes.io/instance": "etcd"}
CLIENT, PEER, METRICS = 2379, 2380, 8080


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = "10.0.0.99"


@dataclass(frozen=True)
class Address:
    """Something that is not a pod: reachable only through an ipBlock, or an empty `to`."""

    ip: str


Endpoint = Pod | Address

NAMESPACE_LABELS = {
    name: {"kubernetes.io/metadata.name": name}
    for name in (NS, "kube-system", "monitoring", "other")
}
APP = Pod(NS, {"app": "api"}, "10.0.1.1")
LABELLED = Pod(NS, {"app": "worker", "etcd-client": "true"}, "10.0.1.2")
OTHER_NAMESPACE = Pod("other", {"app": "api"}, "10.0.2.1")
PROMETHEUS = Pod("monitoring", {"app": "prometheus"}, "10.0.3.1")
KUBE_DNS = Pod("kube-system", {"k8s-app": "kube-dns"}, "10.0.4.1")
NODE_LOCAL_DNS = Address("169.254.20.10")
API_SERVER = Address("172.20.0.10")
OUTSIDE = Address("192.0.2.7")


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    assert "matchExpressions" not in selector, "the evaluator knows matchLabels only"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(peer: dict[str, Any], policy_ns: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], NAMESPACE_LABELS[other.namespace]):
            return False
    elif other.namespace != policy_ns:
        return False
    return _matches(peer.get("podSelector", {}), other.labels)


def _port_matches(rule: dict[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    return any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports)


def _allowed(
    policies: list[dict[str, Any]],
    pod: Pod,
    other: Endpoint,
    port: int,
    protocol: str,
    direction: str,
) -> bool:
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in p["spec"]["policyTypes"]
        and _matches(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            if not _port_matches(rule, port, protocol):
                continue
            peers = rule.get(peers_key)
            if not peers or any(
                _peer_matches(p, policy["metadata"]["namespace"], other) for p in peers
            ):
                return True
    return False


def can_reach(
    objects: Objects,
    source: Endpoint,
    target: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    policies = [body for (kind, _), body in objects.items() if kind == "NetworkPolicy"]
    if isinstance(source, Pod) and not _allowed(policies, source, target, port, protocol, "Egress"):
        return False
    return not isinstance(target, Pod) or _allowed(
        policies, target, source, port, protocol, "Ingress"
    )


def _template_pod(objects: Objects, kind: str, name: str, ip: str) -> Pod:
    labels = objects[(kind, name)]["spec"]["template"]["metadata"]["labels"]
    return Pod(NS, {str(k): str(v) for k, v in labels.items()}, ip)


def member(objects: Objects, ip: str = "10.0.0.1") -> Pod:
    return _template_pod(objects, "StatefulSet", "etcd", ip)


def hook(objects: Objects) -> Pod:
    return _template_pod(objects, "Job", "etcd-scale-down", "10.0.0.50")


def webui(objects: Objects) -> Pod:
    return _template_pod(objects, "Deployment", "etcd-webui", "10.0.0.60")


# --- the defaults --------------------------------------------------------------------------


def test_every_pod_of_the_default_render_has_a_network_policy(helm: str) -> None:
    objects = render(helm)
    assert ("NetworkPolicy", "etcd") in objects
    policies = [body for (kind, _), body in objects.items() if kind == "NetworkPolicy"]
    for pod in (member(objects), hook(objects)):
        assert any(_matches(p["spec"]["podSelector"], pod.labels) for p in policies), pod


def test_default_policy_is_ingress_only_and_selects_the_members(helm: str) -> None:
    spec = render(helm)[("NetworkPolicy", "etcd")]["spec"]
    assert spec["podSelector"] == {"matchLabels": SELECTOR}
    assert spec["policyTypes"] == ["Ingress"]
    assert "egress" not in spec


def test_default_peer_port_only_from_members(helm: str) -> None:
    objects = render(helm)
    one, two = member(objects, "10.0.0.1"), member(objects, "10.0.0.2")
    assert can_reach(objects, one, two, PEER)
    for outsider in (
        APP,
        LABELLED,
        OTHER_NAMESPACE,
        PROMETHEUS,
        hook(objects),
        OUTSIDE,
    ):
        assert not can_reach(objects, outsider, two, PEER), outsider


def test_default_client_port_open_to_every_client(helm: str) -> None:
    objects = render(helm)
    target = member(objects)
    for client in (
        APP,
        LABELLED,
        OTHER_NAMESPACE,
        OUTSIDE,
        member(objects, "10.0.0.2"),
    ):
        assert can_reach(objects, client, target, CLIENT), client
    assert can_reach(objects, hook(objects), target, CLIENT)


def test_default_metrics_port_open_to_scrapers(helm: str) -> None:
    objects = render(helm)
    for scraper in (PROMETHEUS, APP, OUTSIDE):
        assert can_reach(objects, scraper, member(objects), METRICS), scraper


def test_default_egress_unrestricted_dns_and_api_reachable(helm: str) -> None:
    objects = render(helm)
    for pod in (member(objects), hook(objects)):
        assert can_reach(objects, pod, KUBE_DNS, 53, "UDP")
        assert can_reach(objects, pod, NODE_LOCAL_DNS, 53, "UDP")
        assert can_reach(objects, pod, API_SERVER, 8443)
        assert can_reach(objects, pod, API_SERVER, 6443)


def test_default_hook_accepts_no_connection(helm: str) -> None:
    objects = render(helm)
    spec = objects[("NetworkPolicy", "etcd-scale-down")]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    for source in (APP, member(objects), OUTSIDE):
        assert not can_reach(objects, source, hook(objects), 8080), source


def test_disabled_renders_no_network_policy(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("webui"), "--set", "networkPolicy.enabled=false")
    assert not [key for key in objects if key[0] == "NetworkPolicy"]


# --- what is off by default keeps working when turned on --------------------------------------


def test_webui_reaches_the_client_port_and_serves_http(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("webui"))
    ui = webui(objects)
    assert can_reach(objects, ui, member(objects), CLIENT)
    assert not can_reach(objects, ui, member(objects), PEER)
    assert can_reach(objects, APP, ui, 8080)
    assert can_reach(objects, ui, KUBE_DNS, 53, "UDP")


@pytest.mark.parametrize(
    "extra",
    [
        ("--set", "networkPolicy.client.restrict=true"),
        ("--set", "networkPolicy.egress.restrict=true"),
        (
            "--set",
            "networkPolicy.client.restrict=true,networkPolicy.egress.restrict=true",
        ),
    ],
    ids=["client-restricted", "egress-restricted", "both-restricted"],
)
def test_hook_webui_and_agent_keep_working_when_restricted(
    helm: str, extra: tuple[str, str]
) -> None:
    objects = render(
        helm,
        "-f",
        scenario_file("webui"),
        "--set",
        "networkPolicy.egress.kubernetesApi.ports={6443,8443}",
        *extra,
    )
    one, two = member(objects, "10.0.0.1"), member(objects, "10.0.0.2")
    for port in (CLIENT, PEER):
        assert can_reach(objects, one, two, port)
    for pod in (one, hook(objects)):
        assert can_reach(objects, pod, API_SERVER, 8443), pod
        assert can_reach(objects, pod, KUBE_DNS, 53, "UDP"), pod
        assert can_reach(objects, pod, KUBE_DNS, 53, "TCP"), pod
    for client in (hook(objects), webui(objects), LABELLED):
        assert can_reach(objects, client, two, CLIENT), client


def test_client_restrict_allows_members_labelled_pods_and_selectors(helm: str) -> None:
    objects = render(
        helm,
        "--set",
        "networkPolicy.client.restrict=true",
        "--set-json",
        'networkPolicy.client.namespaceSelectors=[{"matchLabels":{"kubernetes.io/metadata.name":"other"}}]',
    )
    target = member(objects)
    assert can_reach(objects, LABELLED, target, CLIENT)
    assert can_reach(objects, OTHER_NAMESPACE, target, CLIENT)
    assert not can_reach(objects, APP, target, CLIENT)
    assert not can_reach(objects, OUTSIDE, target, CLIENT)


def test_listing_a_client_selector_restricts_the_client_port(helm: str) -> None:
    objects = render(
        helm,
        "--set-json",
        'networkPolicy.client.podSelectors=[{"matchLabels":{"app":"api"}}]',
    )
    target = member(objects)
    assert can_reach(objects, APP, target, CLIENT)
    assert can_reach(objects, LABELLED, target, CLIENT)
    assert can_reach(objects, hook(objects), target, CLIENT)
    assert not can_reach(objects, OTHER_NAMESPACE, target, CLIENT)
    assert not can_reach(objects, Pod(NS, {"app": "batch"}, "10.0.1.9"), target, CLIENT)


def test_metrics_restricted_to_the_configured_scrapers(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("secure"))
    target = member(objects)
    assert can_reach(objects, PROMETHEUS, target, METRICS)
    assert not can_reach(objects, APP, target, METRICS)
    assert not can_reach(objects, OTHER_NAMESPACE, target, METRICS)


def test_metrics_restrict_without_scrapers_closes_the_port(helm: str) -> None:
    objects = render(helm, "--set", "networkPolicy.metrics.restrict=true")
    assert not can_reach(objects, PROMETHEUS, member(objects), METRICS)
    assert can_reach(objects, APP, member(objects), CLIENT)


def test_egress_restrict_limits_members_to_peers_dns_and_api(helm: str) -> None:
    objects = render(
        helm,
        "--set",
        "networkPolicy.egress.restrict=true,networkPolicy.egress.kubernetesApi.cidrs={172.20.0.10/32}",
    )
    pod = member(objects)
    assert can_reach(objects, pod, KUBE_DNS, 53, "UDP")
    assert can_reach(objects, pod, API_SERVER, 6443)
    assert not can_reach(objects, pod, OUTSIDE, 6443)
    assert not can_reach(objects, pod, OUTSIDE, 80)
    assert not can_reach(objects, pod, APP, 8080)


NODE_LOCAL_DNS_PEER = '[{"ipBlock":{"cidr":"169.254.20.10/32"}}]'


def test_dns_servers_are_configurable(helm: str) -> None:
    """NodeLocal DNSCache answers on a link-local address, not from kube-dns pods."""
    objects = render(
        helm,
        "-f",
        scenario_file("webui"),
        "--set",
        "networkPolicy.egress.restrict=true",
        "--set-json",
        f"networkPolicy.egress.dns.to={NODE_LOCAL_DNS_PEER}",
    )
    for pod in (member(objects), hook(objects), webui(objects)):
        for protocol in ("UDP", "TCP"):
            assert can_reach(objects, pod, NODE_LOCAL_DNS, 53, protocol), pod
        assert not can_reach(objects, pod, KUBE_DNS, 53, "UDP"), pod


def test_dns_ports_are_configurable(helm: str) -> None:
    objects = render(
        helm,
        "--set",
        "networkPolicy.egress.restrict=true",
        "--set-json",
        'networkPolicy.egress.dns.ports=[{"port":5353,"protocol":"UDP"}]',
    )
    for pod in (member(objects), hook(objects)):
        assert can_reach(objects, pod, KUBE_DNS, 5353, "UDP"), pod
        assert not can_reach(objects, pod, KUBE_DNS, 53, "UDP"), pod


def test_dns_egress_can_be_left_out(helm: str) -> None:
    objects = render(
        helm, "--set", "networkPolicy.egress.restrict=true,networkPolicy.egress.dns.enabled=false"
    )
    for pod in (member(objects), hook(objects)):
        assert not can_reach(objects, pod, KUBE_DNS, 53, "UDP"), pod


def test_extra_ingress_rules_are_appended(helm: str) -> None:
    objects = render(
        helm,
        "--set",
        "networkPolicy.client.restrict=true",
        "--set-json",
        'networkPolicy.extraIngress=[{"from":[{"namespaceSelector":{"matchLabels":'
        '{"kubernetes.io/metadata.name":"other"}}}],"ports":[{"port":2379,"protocol":"TCP"}]}]',
    )
    target = member(objects)
    assert can_reach(objects, OTHER_NAMESPACE, target, CLIENT)
    assert not can_reach(objects, OTHER_NAMESPACE, target, PEER)
    assert not can_reach(objects, APP, target, CLIENT)
    ingress = objects[("NetworkPolicy", "etcd")]["spec"]["ingress"]
    assert ingress[-1]["ports"] == [{"port": 2379, "protocol": "TCP"}]


def test_extra_egress_rules_are_appended(helm: str) -> None:
    objects = render(
        helm,
        "--set",
        "networkPolicy.egress.restrict=true",
        "--set-json",
        'networkPolicy.extraEgress=[{"to":[{"ipBlock":{"cidr":"192.0.2.0/24"}}],'
        '"ports":[{"port":9000}]}]',
    )
    pod = member(objects)
    assert can_reach(objects, pod, OUTSIDE, 9000)
    assert not can_reach(objects, pod, OUTSIDE, 80)
    assert not can_reach(objects, hook(objects), OUTSIDE, 9000)


def test_secure_scenario_restricts_clients_and_egress(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("secure"))
    target = member(objects)
    assert not can_reach(objects, APP, target, CLIENT)
    assert can_reach(objects, LABELLED, target, CLIENT)
    assert not can_reach(objects, target, OUTSIDE, 80)
    assert can_reach(objects, target, API_SERVER, 6443)


def test_notes_say_whether_the_client_port_is_open(helm4: str) -> None:
    assert (
        "  The NetworkPolicy leaves the client port open to every pod; "
        "networkPolicy.client.restrict: true\n"
        '  limits it to members, pods labelled etcd-client: "true" and the configured selectors.\n'
    ) in notes(helm4)
    restricted = notes(helm4, "-f", scenario_file("secure"))
    assert 'The NetworkPolicy admits clients labelled etcd-client: "true"' in restricted
    assert "client port open" not in restricted
