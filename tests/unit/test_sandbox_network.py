"""The sandbox's addresses, hosts file, hook order, cluster domain and command-line parsing."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import pytest
from etcd_chart.kubedns import service_names
from etcd_chart.sandbox import command
from etcd_chart.sandbox.network import (
    AddressInUse,
    HostEntry,
    Network,
    check_port_free,
    pod_names,
    render_hosts,
    subnet_candidates,
)
from etcd_chart.sandbox.render import RenderArgs, cluster_domain


def test_subnet_candidates_are_stable_per_path_and_never_127_0_0() -> None:
    first = list(zip(range(5), subnet_candidates(Path("/tmp/a")), strict=False))
    again = list(zip(range(5), subnet_candidates(Path("/tmp/a")), strict=False))
    other = list(zip(range(5), subnet_candidates(Path("/tmp/b")), strict=False))
    assert first == again
    assert first != other
    assert all(prefix.startswith("127.") and not prefix.startswith("127.0.") for _, prefix in first)


def test_addresses_start_at_10_and_are_kept(tmp_path: Path) -> None:
    network = Network(
        tmp_path / "network.json", tmp_path / "hosts", subnet="127.66.5", routes=False
    )
    assert network.api_address == "127.66.5.1"
    assert network.address_for("ns/etcd-0") == "127.66.5.10"
    assert network.address_for("ns/etcd-1") == "127.66.5.11"
    assert network.address_for("ns/etcd-0") == "127.66.5.10"
    network.release("ns/etcd-0")
    assert network.address_for("ns/web-abc") == "127.66.5.10"
    assert Network(tmp_path / "network.json", tmp_path / "hosts", routes=False).addresses == {
        "ns/etcd-1": "127.66.5.11",
        "ns/web-abc": "127.66.5.10",
    }


def test_pod_and_service_names() -> None:
    assert pod_names("etcd-0", "etcd-headless", "db", "example.org") == [
        "etcd-0.etcd-headless",
        "etcd-0.etcd-headless.db",
        "etcd-0.etcd-headless.db.svc",
        "etcd-0.etcd-headless.db.svc.example.org",
        "etcd-0",
    ]
    assert pod_names("web-1", "", "db", "cluster.local") == ["web-1"]
    assert service_names("etcd", "db", "cluster.local") == [
        "etcd",
        "etcd.db",
        "etcd.db.svc",
        "etcd.db.svc.cluster.local",
    ]


def test_hosts_file_is_rewritten_in_place(tmp_path: Path) -> None:
    network = Network(
        tmp_path / "network.json", tmp_path / "hosts", subnet="127.66.5", routes=False
    )
    network.write_hosts([HostEntry("127.66.5.10", ["a.svc", "a"])])
    inode = os.stat(tmp_path / "hosts").st_ino
    network.write_hosts(
        [HostEntry("127.66.5.10", ["a.svc", "a"]), HostEntry("127.66.5.11", ["b.svc", "b"])]
    )
    network.write_hosts([HostEntry("127.66.5.11", ["b.svc", "b"])])
    assert os.stat(tmp_path / "hosts").st_ino == inode
    assert (tmp_path / "hosts").read_text() == render_hosts(
        [HostEntry("127.66.5.11", ["b.svc", "b"])]
    )
    assert (tmp_path / "hosts").read_text().splitlines()[-1] == "127.66.5.11\tb.svc b"


def test_hosts_first_name_wins() -> None:
    text = render_hosts([HostEntry("127.1.1.10", ["x", "y"]), HostEntry("127.1.1.11", ["y", "z"])])
    assert text.splitlines()[-2:] == ["127.1.1.10\tx y", "127.1.1.11\tz"]


def test_port_in_use_is_reported() -> None:
    with socket.socket() as taken:
        taken.bind(("127.66.7.10", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            AddressInUse,
            match=rf"^Pod a/b port client: address 127.66.7.10:{port} is already in use",
        ):
            check_port_free("127.66.7.10", port, "Pod a/b port client")
    check_port_free("127.66.7.10", port, "Pod a/b port client")


def test_cluster_domain_sources(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "values.yaml").write_text("clusterDomain: chart.default\n")
    values = tmp_path / "v.yaml"
    values.write_text("clusterDomain: from.file\n")
    assert cluster_domain(RenderArgs(chart=str(chart))) == "chart.default"
    assert cluster_domain(RenderArgs(chart=str(chart), values=[str(values)])) == "from.file"
    assert (
        cluster_domain(
            RenderArgs(
                chart=str(chart), values=[str(values)], set=["replicas=5,clusterDomain=from.set"]
            )
        )
        == "from.set"
    )
    assert cluster_domain(RenderArgs(chart=str(chart), cluster_domain="explicit")) == "explicit"
    assert cluster_domain(RenderArgs(manifest="m.yaml")) == "cluster.local"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_etcdctl_arguments_after_double_dash() -> None:
    args = _parse(["etcdctl", "etcd-0", "--state-dir", "/s", "--", "member", "list", "-w", "table"])
    assert (args.pod, args.state_dir, args.args) == (
        "etcd-0",
        "/s",
        ["member", "list", "-w", "table"],
    )


def test_up_arguments() -> None:
    args = _parse(
        [
            "up",
            "./chart",
            "-f",
            "a.yaml",
            "--set",
            "replicas=5",
            "--state-dir",
            "/s",
            "--helm-version",
            "3",
        ]
    )
    assert (args.chart, args.values, args.set, args.helm_version, args.name, args.namespace) == (
        "./chart",
        ["a.yaml"],
        ["replicas=5"],
        3,
        "etcd",
        "default",
    )


def _source_seen_by(address: str) -> str:
    with socket.socket() as server:
        server.bind((address, 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            accepted, peer = server.accept()
            accepted.close()
    return str(peer[0])


def test_source_route_makes_connections_to_a_pod_leave_from_its_address(tmp_path: Path) -> None:
    network = Network(tmp_path / "network.json", tmp_path / "hosts", subnet="127.66.9")
    address = network.address_for("ns/etcd-0")
    try:
        assert network.routes == [address]
        assert _source_seen_by(address) == address
    finally:
        network.remove_routes()
    assert network.routes == []
    assert _source_seen_by(address) == "127.0.0.1"
