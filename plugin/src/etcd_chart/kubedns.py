"""The DNS names Kubernetes gives a Service, from the shortest to the fully qualified one."""

from __future__ import annotations


def service_names(service: str, namespace: str, domain: str) -> list[str]:
    """`S`, `S.NS`, `S.NS.svc`, `S.NS.svc.DOMAIN`; a headless Service's pod P is `P.` + each."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{domain}",
    ]
