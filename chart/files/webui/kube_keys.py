"""Names of Kubernetes objects from their etcd keys (`/registry/...`), as kube-apiserver lays
them out: `/registry/[GROUP/]RESOURCE/[NAMESPACE/]NAME`. Pure functions."""

from __future__ import annotations

REGISTRY_PREFIX = b"/registry/"

# Resources stored under another path than their name (kept from the first API versions).
LEGACY_PATHS = {
    ("minions",): "nodes",
    ("services", "specs"): "services",
    ("services", "endpoints"): "endpoints",
    ("serviceips",): "serviceips",
}

# Resources that belong to no namespace, so `/registry/R/A` is object A and `/registry/R/A/B`
# does not occur. Without this list a two-segment rest is read as NAMESPACE/NAME.
CLUSTER_SCOPED = frozenset(
    {
        "nodes",
        "namespaces",
        "persistentvolumes",
        "clusterroles",
        "clusterrolebindings",
        "customresourcedefinitions",
        "apiservices",
        "priorityclasses",
        "storageclasses",
        "csidrivers",
        "csinodes",
        "volumeattachments",
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
        "runtimeclasses",
        "ingressclasses",
        "certificatesigningrequests",
        "flowschemas",
        "prioritylevelconfigurations",
        "clusterissuers",
    }
)


def kubernetes_key(key: bytes) -> dict[str, str] | None:
    """{group, resource, namespace, name} of a key under /registry/, None for any other key.
    `namespace` is "" for cluster-scoped objects; keys that name no object (a bare
    `/registry/pods`, `/registry/masterleases/...`) give resource and name as far as they go."""
    if not key.startswith(REGISTRY_PREFIX):
        return None
    try:
        rest = key[len(REGISTRY_PREFIX) :].decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = [part for part in rest.split("/")]
    if not parts or not parts[0]:
        return None
    group = ""
    if "." in parts[0] and len(parts) > 1:
        group, parts = parts[0], parts[1:]
    resource = parts[0]
    consumed = 1
    for path, name in LEGACY_PATHS.items():
        if tuple(parts[: len(path)]) == path:
            resource, consumed = name, len(path)
            break
    names = parts[consumed:]
    if len(names) >= 2 and resource not in CLUSTER_SCOPED:
        namespace, name = names[0], "/".join(names[1:])
    else:
        namespace, name = "", "/".join(names)
    return {"group": group, "resource": resource, "namespace": namespace, "name": name}
