"""The sandbox's local volume provisioner, in the manner of the external provisioners real
clusters run for node-local disks.

It owns one StorageClass, marked default (and any other names `sandbox up --storage-class` asks
for, for values that name a class), with `volumeBindingMode: WaitForFirstConsumer`: the
scheduler picks a node for the pod and writes it into the claim
(`volume.kubernetes.io/selected-node`), kube-controller-manager's volume controller hands the
claim to this provisioner (`volume.kubernetes.io/storage-provisioner`), and the provisioner makes
a directory under the state dir and a `local` PersistentVolume pinned to that node, which the
volume controller then binds. A released volume of reclaim policy Delete is removed, directory
and object. It acts with the control plane's admin credentials.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etcd_chart.sandbox.kubeapi import ApiError, KubeApi, informer

PROVISIONER = "sandbox.etcd-chart.io/local"
STORAGE_CLASS = "sandbox-local"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
ASSIGNED = "volume.kubernetes.io/storage-provisioner"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def storage_class(name: str = STORAGE_CLASS) -> dict[str, Any]:
    default = {"storageclass.kubernetes.io/is-default-class": "true"}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": name,
            "annotations": default if name == STORAGE_CLASS else {},
        },
        "provisioner": PROVISIONER,
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    }


def volume_for(claim: dict[str, Any], path: Path) -> dict[str, Any]:
    meta = claim["metadata"]
    spec = claim.get("spec") or {}
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {PROVISIONED_BY: PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.get("storageClassName") or STORAGE_CLASS,
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "local": {"path": str(path)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [meta["annotations"][SELECTED_NODE]],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }


class LocalProvisioner:
    def __init__(self, api: KubeApi, root: Path, event: Callable[[str], None], classes: list[str]):
        self.classes = [STORAGE_CLASS, *(c for c in classes if c != STORAGE_CLASS)]
        self.api = api
        self.root = root
        self.event = event
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def start(self) -> None:
        for name in self.classes:
            status, answer = self.api.request(
                "POST", "/apis/storage.k8s.io/v1/storageclasses", storage_class(name)
            )
            if status not in (201, 409):
                raise ApiError(status, f"creating StorageClass {name}: {answer}")
        for path, handle in (
            ("/api/v1/persistentvolumeclaims", self._on_claim),
            ("/api/v1/persistentvolumes", self._on_volume),
        ):
            threading.Thread(
                target=informer,
                args=(
                    self.api,
                    path,
                    {},
                    handle,
                    self.stop,
                    lambda message: self.event(f"provisioner: {message}"),
                ),
                name=f"provisioner{path.replace('/', '-')}",
                daemon=True,
            ).start()

    def path_of(self, volume_name: str) -> Path:
        return self.root / volume_name

    def _on_claim(self, kind: str, claim: dict[str, Any]) -> None:
        meta = claim["metadata"]
        annotations = meta.get("annotations") or {}
        if (
            kind == "DELETED"
            or annotations.get(ASSIGNED) != PROVISIONER
            or not annotations.get(SELECTED_NODE)
            or (claim.get("spec") or {}).get("volumeName")
            or meta.get("deletionTimestamp")
        ):
            return
        with self.lock:
            volume = volume_for(claim, self.path_of(f"pvc-{meta['uid']}"))
            path = Path(volume["spec"]["local"]["path"])
            path.mkdir(parents=True, exist_ok=True)
            status, answer = self.api.request("POST", "/api/v1/persistentvolumes", volume)
            if status == 201:
                self.event(
                    f"provisioner: {volume['metadata']['name']} for claim "
                    f"{meta['namespace']}/{meta['name']} on {annotations[SELECTED_NODE]}"
                )
            elif status != 409:
                self.event(
                    f"provisioner: creating {volume['metadata']['name']}: HTTP {status} "
                    f"{(answer or {}).get('message') if isinstance(answer, dict) else answer}"
                )

    def _on_volume(self, kind: str, volume: dict[str, Any]) -> None:
        meta = volume["metadata"]
        spec = volume.get("spec") or {}
        if (
            kind == "DELETED"
            or (meta.get("annotations") or {}).get(PROVISIONED_BY) != PROVISIONER
            or (volume.get("status") or {}).get("phase") not in ("Released", "Failed")
            or spec.get("persistentVolumeReclaimPolicy") != "Delete"
        ):
            return
        path = Path(str((spec.get("local") or {}).get("path") or ""))
        if path.is_relative_to(self.root):
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError, ApiError):
            self.api.request("DELETE", f"/api/v1/persistentvolumes/{meta['name']}")
        claim = spec.get("claimRef") or {}
        self.event(
            f"provisioner: {meta['name']} of claim {claim.get('namespace')}/{claim.get('name')} "
            "deleted with its data"
        )
