"""Checks across the objects of a stream, for each etcd member set. Each adds to a Report.

- the etcd settings: present, valid for etcd 3.5 to 3.7, member name = pod name;
- an odd member count (unless `etcd-chart/allow-even-replicas: "true"`);
- PodDisruptionBudgets that select the members keep quorum;
- cert-manager Certificates whose Secrets the members use cover every member name;
- the headless Service named by `serviceName` exists, is headless, publishes not-ready pods and
  selects the members; the client Service of the same name as the StatefulSet selects them;
- ports agree: listen and advertise URLs, container ports, Service target ports;
- no two objects with the same group, kind, namespace and name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from etcd_chart.postrender import peers
from etcd_chart.postrender.members import (
    ALLOW_EVEN_ANNOTATION,
    CONFIG_ANNOTATION,
    MAX_MEMBERS_ANNOTATION,
    ContainerSettings,
    Lookup,
    MemberSet,
    variables_in,
)
from etcd_chart.postrender.stream import is_hook
from etcd_chart.report import Report, manifest_place
from etcd_chart.yamlio import Document

REQUIRED_SETTINGS = (
    "name",
    "initial-advertise-peer-urls",
    "listen-peer-urls",
    "listen-client-urls",
    "advertise-client-urls",
)
TLS_MOUNT_ROOT = "/etc/etcd/tls/"


def quorum(members: int) -> int:
    return members // 2 + 1


def tolerated_failures(members: int) -> int:
    return (members - 1) // 2


def place(document: Document, path: str = "") -> str:
    return manifest_place(document.source, document.kind, document.name, path)


def _settings_place(member: MemberSet, key: str) -> str:
    assert member.settings is not None
    document = member.settings.documents()[0]
    return place(document, member.settings.path(key))


def matches_selector(labels: dict[str, str], selector: Any) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions); empty selects nothing."""
    if not isinstance(selector, dict) or not selector:
        return False
    match_labels = selector.get("matchLabels") or {}
    for key, value in match_labels.items():
        if labels.get(str(key)) != str(value):
            return False
    for expression in selector.get("matchExpressions") or []:
        key = str(expression.get("key"))
        operator = expression.get("operator")
        values = [str(v) for v in expression.get("values") or []]
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return bool(match_labels) or bool(selector.get("matchExpressions"))


def service_selects(service: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = (service.get("spec") or {}).get("selector")
    if not isinstance(selector, dict) or not selector:
        return False
    return all(labels.get(str(k)) == str(v) for k, v in selector.items())


def check_settings(member: MemberSet, report: Report) -> None:
    document = member.statefulset
    if member.settings is None:
        if member.settings_problem:
            report.add(
                place(document, f"metadata.annotations[{CONFIG_ANNOTATION}]")
                if member.chart_owned
                else place(document, member.container_path),
                f"cannot read the etcd settings: {member.settings_problem}",
                "render the configuration into a ConfigMap in the same release, or pass "
                "--initial-cluster as a flag or ETCD_INITIAL_CLUSTER as an env var",
            )
        return
    settings = member.settings
    if member.chart_owned:
        missing = [key for key in REQUIRED_SETTINGS if not settings.get(key)]
        if missing:
            report.add(
                place(settings.documents()[0], settings.path(missing[0])),
                f"the etcd configuration lacks {', '.join(missing)}",
                "render every one of them in the chart's configuration",
            )
        if isinstance(settings, ContainerSettings):
            return
        config = getattr(settings, "config", {})
        removed = sorted(k for k in config if k.startswith("experimental-") or k == "enable-v2")
        for key in removed:
            report.add(
                _settings_place(member, key),
                "this setting no longer exists in etcd 3.7 (every experimental-* flag and "
                "enable-v2 were removed)",
                "use its stable name, or drop it",
            )
    if isinstance(settings, ContainerSettings):
        for key in ("initial-cluster", "initial-cluster-state", "initial-advertise-peer-urls"):
            if settings.env_is_indirect(key):
                report.add(
                    place(document, settings.path(key)),
                    f"{peers_env(key)} comes from valueFrom, so the post-renderer cannot read "
                    "or fill it",
                    "give it a literal value, or use the flag instead",
                )
    state = settings.get("initial-cluster-state")
    if state is not None and state not in ("new", "existing"):
        report.add(
            _settings_place(member, "initial-cluster-state"),
            f"initial-cluster-state is {state!r}",
            "use new or existing",
        )
    name = settings.get("name")
    if (
        member.replicas > 1
        and isinstance(name, str)
        and name
        and not set(variables_in(name)) & set(member.pod_name_vars)
    ):
        bound = ", ".join(f"$({v})" for v in member.pod_name_vars) or "none"
        report.add(
            _settings_place(member, "name"),
            f"member name is {name!r}, not the pod name, so it cannot match the peer list "
            f"(variables bound to metadata.name: {bound})",
            "set it to the pod name, e.g. $(POD_NAME) with POD_NAME from fieldRef metadata.name",
        )
    if (
        member.replicas > 1
        and not settings.get("initial-cluster")
        and not settings.get("discovery")
        and not settings.get("discovery-srv")
        and isinstance(settings, ContainerSettings)
        and not settings.get("initial-advertise-peer-urls")
    ):
        report.add(
            place(document, member.container_path),
            f"{member.replicas} members but no peer list: no --initial-cluster flag, "
            "ETCD_INITIAL_CLUSTER env var or --config-file from a ConfigMap",
            "add --initial-cluster and --initial-advertise-peer-urls=<scheme>://$(POD_NAME)."
            "<service>:<port>; the post-renderer fills the list",
        )


def peers_env(key: str) -> str:
    return "ETCD_" + key.upper().replace("-", "_")


def check_member_count(member: MemberSet, report: Report) -> None:
    count = member.replicas
    allowed = str(member.annotations.get(ALLOW_EVEN_ANNOTATION, "")).lower() == "true"
    if count > 0 and count % 2 == 0 and not allowed:
        report.add(
            place(member.statefulset, "spec.replicas"),
            f"{count} members: an even count tolerates {tolerated_failures(count)} failed "
            f"member(s), no more than {count - 1} members do, and needs a larger quorum "
            f"({quorum(count)})",
            f"use an odd number such as {count - 1} or {count + 1}, or annotate the "
            f'StatefulSet {ALLOW_EVEN_ANNOTATION}: "true"',
        )


def max_members_fix(member: MemberSet) -> str:
    """How to raise the member count certificates must cover: the chart's value for the chart's
    own member set, the annotation for any other."""
    if member.chart_owned:
        return (
            "set tls.maxMembers to the largest member count it may grow to (the chart writes it "
            f"into the StatefulSet annotation {MAX_MEMBERS_ANNOTATION})"
        )
    return (
        f"annotate the StatefulSet {MAX_MEMBERS_ANNOTATION} with the largest member count it "
        "may grow to"
    )


def max_members(member: MemberSet, report: Report) -> int:
    raw = member.annotations.get(MAX_MEMBERS_ANNOTATION)
    if raw is None:
        return member.replicas
    try:
        value = int(str(raw))
    except ValueError:
        report.add(
            place(member.statefulset, f"metadata.annotations[{MAX_MEMBERS_ANNOTATION}]"),
            f"{raw!r} is not a whole number",
            'give the largest member count the set may grow to, e.g. "9"',
        )
        return member.replicas
    return max(value, member.replicas)


def check_pdbs(
    member: MemberSet, documents: list[Document], default_ns: str, report: Report
) -> None:
    count = member.replicas
    if count <= 0:
        return
    labels = member.pod_labels
    for document in documents:
        if document.kind != "PodDisruptionBudget":
            continue
        if (document.namespace or default_ns) != member.namespace:
            continue
        spec = document.body.get("spec") or {}
        if not matches_selector(labels, spec.get("selector")):
            continue
        allowed = tolerated_failures(count)
        if "maxUnavailable" in spec:
            value = _scaled(spec["maxUnavailable"], count)
            if value is not None and value > allowed:
                report.add(
                    place(document, "spec.maxUnavailable"),
                    f"lets {value} of {count} members of StatefulSet/{member.name} go at once; "
                    f"quorum needs {quorum(count)}, so at most {allowed} may be down",
                    f"set maxUnavailable to {allowed}"
                    if allowed
                    else "with a single member no disruption keeps it available: "
                    "run 3 members, or remove the budget",
                )
        if "minAvailable" in spec:
            value = _scaled(spec["minAvailable"], count)
            if value is not None and value < quorum(count):
                report.add(
                    place(document, "spec.minAvailable"),
                    f"keeps only {value} of {count} members of StatefulSet/{member.name}; "
                    f"quorum needs {quorum(count)}",
                    f"set minAvailable to {quorum(count)} or use maxUnavailable: {allowed}",
                )


def _scaled(value: Any, total: int) -> int | None:
    """A PodDisruptionBudget int-or-percent as a count (percentages round up, as Kubernetes)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return math.ceil(total * int(value[:-1]) / 100)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@dataclass(frozen=True)
class SecretMount:
    """A Secret that a container of the member pods sees as files under `mount_path`."""

    mount_path: str  # without a trailing slash
    secret: str
    field: str  # where the StatefulSet names the Secret, for messages


def secret_mounts(
    member: MemberSet, containers: list[dict[str, Any]] | None = None
) -> list[SecretMount]:
    """The Secret volumes (plain or projected) that `containers` mount, in mount order; by
    default those of the etcd container."""
    volumes: dict[Any, tuple[int, dict[str, Any]]] = {}
    for position, volume in enumerate(member.pod_spec.get("volumes") or []):
        if isinstance(volume, dict):
            volumes[volume.get("name")] = (position, volume)
    if containers is None:
        containers = [member.container] if member.container else []
    found: list[SecretMount] = []
    for container in containers:
        for mount in container.get("volumeMounts") or []:
            if not isinstance(mount, dict) or mount.get("name") not in volumes:
                continue
            position, volume = volumes[mount.get("name")]
            mount_path = str(mount.get("mountPath", "")).rstrip("/")
            base = f"spec.template.spec.volumes[{position}]"
            secret = volume.get("secret")
            if isinstance(secret, dict) and secret.get("secretName"):
                found.append(
                    SecretMount(mount_path, str(secret["secretName"]), f"{base}.secret.secretName")
                )
            projected = volume.get("projected")
            if isinstance(projected, dict):
                for index, source in enumerate(projected.get("sources") or []):
                    if isinstance(source, dict) and isinstance(source.get("secret"), dict):
                        name = source["secret"].get("name")
                        if name:
                            field = f"{base}.projected.sources[{index}].secret.name"
                            found.append(SecretMount(mount_path, str(name), field))
    return found


def _mounted_secrets(member: MemberSet) -> dict[str, str]:
    """mount path -> Secret name, for the etcd container's Secret volumes."""
    return {mount.mount_path: mount.secret for mount in secret_mounts(member)}


def _secret_for_file(path: str, mounts: dict[str, str]) -> str | None:
    best = ""
    for mount_path in mounts:
        if (path.startswith(mount_path + "/")) and len(mount_path) > len(best):
            best = mount_path
    return mounts.get(best) if best else None


def covers(dns_names: list[str], host: str) -> bool:
    host = host.lower().rstrip(".")
    for name in dns_names:
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and host.count(".") >= 1 and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def served_urls(member: MemberSet, mounts: dict[str, str]) -> dict[str, set[str]]:
    """Secret name -> the advertised URL settings whose hosts its certificate serves
    (`initial-advertise-peer-urls` for the peer certificate, `advertise-client-urls` for the
    server certificate), from the etcd settings' file paths and the chart's mount paths."""
    served: dict[str, set[str]] = {}
    if member.settings is None:
        return served
    for file_key, url_key in (
        ("peer-cert-file", "initial-advertise-peer-urls"),
        ("cert-file", "advertise-client-urls"),
    ):
        path = member.settings.get(file_key)
        secret = _secret_for_file(str(path), mounts) if isinstance(path, str) else None
        if secret:
            served.setdefault(secret, set()).add(url_key)
    for mount_path, secret in mounts.items():
        if mount_path == TLS_MOUNT_ROOT + "peer":
            served.setdefault(secret, set()).add("initial-advertise-peer-urls")
        elif mount_path == TLS_MOUNT_ROOT + "server":
            served.setdefault(secret, set()).add("advertise-client-urls")
    return served


def uncovered(
    member: MemberSet, url_keys: set[str], names: list[str], count: int, cluster_domain: str
) -> list[str]:
    """The hosts of members 0 .. count-1 in the advertised URL settings `url_keys` that the
    certificate names `names` do not cover."""
    missing: list[str] = []
    for url_key in sorted(url_keys):
        for host in peers.member_hosts(member, url_key, count, cluster_domain):
            if not covers(names, host) and host not in missing:
                missing.append(host)
    return missing


def shortened(items: list[str], limit: int = 6) -> str:
    """`a, b, c and 4 more`."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_certificates(
    member: MemberSet,
    documents: list[Document],
    default_ns: str,
    cluster_domain: str,
    report: Report,
) -> None:
    mounts = _mounted_secrets(member)
    if not mounts or member.settings is None:
        return
    served = served_urls(member, mounts)
    if not served:
        return
    count = max_members(member, report)
    for document in documents:
        if document.kind != "Certificate" or not document.body.get("apiVersion", "").startswith(
            "cert-manager.io/"
        ):
            continue
        if (document.namespace or default_ns) != member.namespace:
            continue
        spec = document.body.get("spec") or {}
        secret = spec.get("secretName")
        if secret not in served:
            continue
        dns_names = [str(n) for n in spec.get("dnsNames") or []]
        missing = uncovered(member, served[secret], dns_names, count, cluster_domain)
        if missing:
            report.add(
                place(document, "spec.dnsNames"),
                f"the certificate in Secret {secret}, used by StatefulSet/{member.name}, does not "
                f"cover {shortened(missing)} (members up to {count})",
                "add these names (or a wildcard for the headless Service domain); "
                + max_members_fix(member),
            )


def _container_ports(member: MemberSet) -> tuple[dict[str, int], set[int]]:
    named: dict[str, int] = {}
    numbers: set[int] = set()
    for _, container in member.all_containers():
        for port in container.get("ports") or []:
            if isinstance(port, dict) and isinstance(port.get("containerPort"), int):
                numbers.add(port["containerPort"])
                if port.get("name"):
                    named[str(port["name"])] = port["containerPort"]
    return named, numbers


def check_services(member: MemberSet, lookup: Lookup, report: Report) -> None:
    document = member.statefulset
    service_name = member.service_name
    if not service_name:
        report.add(
            place(document, "spec.serviceName"),
            "no serviceName: members get no stable DNS names to find each other by",
            "name a headless Service (clusterIP: None) that selects the members",
        )
    else:
        headless = lookup("Service", member.namespace, service_name)
        if headless is None:
            report.add(
                place(document, "spec.serviceName"),
                f"Service {service_name} is not in the stream, so the members' DNS names "
                f"({member.name}-0.{service_name}...) will not resolve",
                f"render a headless Service named {service_name} (clusterIP: None, "
                "publishNotReadyAddresses: true) that selects the member pods",
            )
        else:
            spec = headless.body.get("spec") or {}
            if spec.get("clusterIP") != "None":
                report.add(
                    place(headless, "spec.clusterIP"),
                    f"StatefulSet/{member.name} names this Service in serviceName, but it is not "
                    "headless, so members get no per-pod DNS names",
                    "set clusterIP: None",
                )
            if spec.get("publishNotReadyAddresses") is not True:
                report.add(
                    place(headless, "spec.publishNotReadyAddresses"),
                    "members must resolve each other before they are ready, or a new cluster "
                    "never forms",
                    "set publishNotReadyAddresses: true",
                )
            _check_service(member, headless, report)
    client = lookup("Service", member.namespace, member.name)
    if client is not None and member.name != service_name:
        _check_service(member, client, report)


def _check_service(member: MemberSet, service: Document, report: Report) -> None:
    if not service_selects(service.body, member.pod_labels):
        selector = (service.body.get("spec") or {}).get("selector")
        report.add(
            place(service, "spec.selector"),
            f"selects {selector or 'nothing'}, which does not match the pods of "
            f"StatefulSet/{member.name} (labels {member.pod_labels or 'none'})",
            "use the StatefulSet's selector labels",
        )
    named, numbers = _container_ports(member)
    for position, port in enumerate((service.body.get("spec") or {}).get("ports") or []):
        if not isinstance(port, dict):
            continue
        target = port.get("targetPort", port.get("port"))
        field = f"spec.ports[{position}].targetPort"
        if isinstance(target, str) and not target.isdigit():
            if target not in named:
                report.add(
                    place(service, field),
                    f"targets port {target!r}, which no container of StatefulSet/{member.name} "
                    f"declares (named ports: {', '.join(sorted(named)) or 'none'})",
                    "use one of the container port names",
                )
        elif isinstance(target, int | str) and numbers and int(target) not in numbers:
            report.add(
                place(service, field),
                f"targets port {target}, which no container of StatefulSet/{member.name} "
                f"declares (ports: {', '.join(str(n) for n in sorted(numbers))})",
                "use a declared container port",
            )


def check_ports(member: MemberSet, report: Report) -> None:
    settings = member.settings
    if settings is None:
        return
    values = peers.env_values(member)
    _, declared = _container_ports(member)
    etcd_declared = {
        p["containerPort"]
        for p in (member.container or {}).get("ports") or []
        if isinstance(p, dict) and isinstance(p.get("containerPort"), int)
    }

    def ports(key: str) -> list[int]:
        found = []
        for text in peers.split_urls(settings.get(key)):
            url = peers.parse_url(peers.expand(text, values))
            if url and url.port_number:
                found.append(url.port_number)
        return found

    for listen_key, advertise_key in (
        ("listen-peer-urls", "initial-advertise-peer-urls"),
        ("listen-client-urls", "advertise-client-urls"),
    ):
        listening = ports(listen_key)
        for port in ports(advertise_key):
            if listening and port not in listening:
                report.add(
                    _settings_place(member, advertise_key),
                    f"advertises port {port}, but etcd listens on "
                    f"{', '.join(str(p) for p in listening)} ({listen_key})",
                    "advertise the port etcd listens on",
                )
    if etcd_declared:
        for key in ("listen-peer-urls", "listen-client-urls", "listen-metrics-urls"):
            for port in ports(key):
                if port not in etcd_declared:
                    report.add(
                        _settings_place(member, key),
                        f"etcd listens on port {port}, which the etcd container does not declare "
                        f"(ports: {', '.join(str(n) for n in sorted(declared))})",
                        "declare it in the container's ports, or listen on a declared port",
                    )


def check_duplicates(documents: list[Document], default_ns: str, report: Report) -> None:
    seen: dict[tuple[str, str, str, str], Document] = {}
    for document in documents:
        if is_hook(document):
            continue
        api_version = str(document.body.get("apiVersion", ""))
        group = api_version.rpartition("/")[0]
        metadata = document.body.get("metadata") or {}
        if not metadata.get("name"):
            continue  # generateName: a new name each time
        key = (group, document.kind, document.namespace or default_ns, document.name)
        first = seen.get(key)
        if first is None:
            seen[key] = document
            continue
        origin = first.source or f"document {first.extra.get('number')}"
        report.add(
            place(document, "metadata.name"),
            f"duplicate: {document.kind} {key[2]}/{document.name} is also rendered by {origin}",
            "give one of them another name, or render it once",
        )
