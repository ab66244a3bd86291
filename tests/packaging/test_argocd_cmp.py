"""The Argo CD Config Management Plugin (deploy/argocd/): its generate command, run as the CMP
server runs it on the packaged chart, gives the manifests `helm template --post-renderer` gives,
and fails with nothing on stdout when the chart refuses the values. The double sync is in
test_install_paths.py (it needs the sandbox)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from argocd import PLUGIN, generate, parameter_environment, sidecar_path, unpacked_chart
from artifacts import REPO, ok
from built_package import BuiltPackage
from etcd_chart.helm import find_tool
from helmhome import helm_env

KUBE_VERSION = "1.37.0"
API_VERSIONS = "v1,apps/v1,batch/v1,policy/v1,rbac.authorization.k8s.io/v1,networking.k8s.io/v1"
PARAMETERS: list[dict[str, Any]] = [
    {"name": "values-files", "array": ["ci/five-members-values.yaml"]},
    {"name": "set", "array": ["clusterDomain=example.internal", "scaleDown.timeoutSeconds=300"]},
]


def by_identity(text: str) -> dict[tuple[str, str, str], Any]:
    objects = {}
    for body in yaml.safe_load_all(text):
        if body:
            meta = body["metadata"]
            objects[(body["kind"], meta.get("namespace", ""), meta["name"])] = body
    return objects


def test_parameters_reach_the_plugin_in_both_forms() -> None:
    env = parameter_environment(
        [{"name": "values-files", "array": ["a.yaml", "b.yaml"]}, {"name": "set", "array": []},
         {"name": "image-tag", "string": "v3.7.3"}, {"name": "extra", "map": {"image.tag": "x"}}]
    )  # fmt: skip
    assert {k: v for k, v in env.items() if k != "ARGOCD_APP_PARAMETERS"} == {
        "PARAM_VALUES_FILES_0": "a.yaml",
        "PARAM_VALUES_FILES_1": "b.yaml",
        "PARAM_IMAGE_TAG": "v3.7.3",
        "PARAM_EXTRA_IMAGE_TAG": "x",
    }


@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_generate_gives_what_helm_template_with_the_post_renderer_gives(
    helm_name: str,
    request: pytest.FixtureRequest,
    helm4: str,
    signed_chart: Path,
    package: BuiltPackage,
    tmp_path: Path,
) -> None:
    app_dir = unpacked_chart(signed_chart, tmp_path / "checkout")
    sidecar = sidecar_path(tmp_path, request.getfixturevalue(helm_name), package.command)
    generated = generate(
        app_dir, [sidecar], "orders", "team-a", PARAMETERS, KUBE_VERSION, API_VERSIONS
    )
    assert (generated.returncode, generated.stderr) == (0, "")

    home = tmp_path / "helm-home"
    ok([helm4, "plugin", "install", str(REPO / "plugin")], env=helm_env(home, 4))
    expected = ok(
        [
            helm4, "template", "orders", str(app_dir), "--namespace", "team-a",
            "--kube-version", KUBE_VERSION, "--api-versions", API_VERSIONS,
            "--values", str(app_dir / "ci" / "five-members-values.yaml"),
            "--set", "clusterDomain=example.internal", "--set", "scaleDown.timeoutSeconds=300",
            "--post-renderer", "etcd-chart", "--post-renderer-args", "--offline",
        ],
        env=helm_env(home, 4),
    )  # fmt: skip
    got, wanted = by_identity(generated.stdout), by_identity(expected)
    assert sorted(got) == sorted(wanted)
    assert got == wanted
    configmap = got[("ConfigMap", "team-a", "orders-etcd-config")]
    peers = yaml.safe_load(configmap["data"]["etcd.conf.json"])["initial-cluster"].split(",")
    assert peers == [
        f"orders-etcd-{i}=http://orders-etcd-{i}.orders-etcd-headless.team-a.svc.example.internal"
        ":2380"
        for i in range(5)
    ]


def test_generate_fails_with_nothing_on_stdout_when_the_chart_refuses(
    helm4: str, signed_chart: Path, package: BuiltPackage, tmp_path: Path
) -> None:
    """An empty stream on a successful exit would make Argo CD prune the whole release."""
    app_dir = unpacked_chart(signed_chart, tmp_path / "checkout")
    generated = generate(
        app_dir, [sidecar_path(tmp_path, helm4, package.command)], "orders", "team-a",
        [{"name": "set", "array": ["replicas=4"]}],
    )  # fmt: skip
    assert generated.returncode == 1
    assert generated.stdout == ""
    assert "replicas: 4 is even" in generated.stderr


def test_plugin_configuration_reaches_the_sidecar() -> None:
    """kustomization.yaml makes the ConfigMap the sidecar patch mounts, from plugin.yaml itself."""
    kustomized = subprocess.run(
        [find_tool("kubectl"), "kustomize", str(PLUGIN.parent)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert kustomized.returncode == 0, kustomized.stderr
    (configmap,) = [body for body in yaml.safe_load_all(kustomized.stdout) if body]
    assert configmap["metadata"] == {"name": "etcd-chart-cmp", "namespace": "argocd"}
    assert configmap["data"] == {"plugin.yaml": PLUGIN.read_text()}
    patch = yaml.safe_load((PLUGIN.parent / "repo-server-patch.yaml").read_text())
    pod = patch["spec"]["template"]["spec"]
    (sidecar,) = pod["containers"]
    assert sidecar["command"] == ["/var/run/argocd/argocd-cmp-server"]
    assert sidecar["securityContext"]["runAsUser"] == 999
    mounts = {m["mountPath"]: m for m in sidecar["volumeMounts"]}
    config_mount = mounts["/home/argocd/cmp-server/config/plugin.yaml"]
    assert config_mount["subPath"] == "plugin.yaml"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[config_mount["name"]]["configMap"]["name"] == "etcd-chart-cmp"
    plugin = yaml.safe_load(PLUGIN.read_text())
    application = yaml.safe_load((PLUGIN.parent / "application.yaml").read_text())
    assert application["spec"]["source"]["plugin"]["name"] == (
        f"{plugin['metadata']['name']}-{plugin['spec']['version']}"
    )
    announced = {p["name"] for p in plugin["spec"]["parameters"]["static"]}
    assert {p["name"] for p in application["spec"]["source"]["plugin"]["parameters"]} <= announced
