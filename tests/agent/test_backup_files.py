"""The backup's and restore's file work in the agent (issue 10): reading a real etcd snapshot as
etcdutl does, refusing damaged ones, the empty snapshot etcdutl restores when a member must not
be, naming and pruning, and the bucket over a real S3-compatible server with Signature V4."""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import AGENT
from etcd_versions import etcd_program

sys.path.insert(0, str(AGENT))
from backup import prune_bucket, prune_directory, run_backup, snapshot_name, to_prune  # noqa: E402
from data_dir import member_data_state  # noqa: E402
from errors import AgentError  # noqa: E402
from restore import adopt_restored_data  # noqa: E402
from runtime import Log  # noqa: E402
from s3_client import EMPTY_SHA256, S3Answer, S3Client, S3Settings, sign_v4  # noqa: E402
from s3server import S3Server, start_s3_server  # noqa: E402
from snapshot_file import empty_snapshot, read_snapshot  # noqa: E402
from start_decision import decide_restore  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def snapshot(tmp_path: Path, etcd_version: str) -> Iterator[Path]:
    """A snapshot `etcdctl snapshot save` took of a one-member etcd with writes, overwrites,
    deletes and a compaction."""
    client, peer = _free_port(), _free_port()
    url = f"http://127.0.0.1:{client}"
    etcd = subprocess.Popen(
        [
            etcd_program(etcd_version, "etcd"),
            "--name=s",
            f"--data-dir={tmp_path / 'etcd'}",
            f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=s=http://127.0.0.1:{peer}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    etcdctl = [etcd_program(etcd_version, "etcdctl"), f"--endpoints={url}"]
    try:
        deadline = time.monotonic() + 20
        while subprocess.run([*etcdctl, "endpoint", "health"], capture_output=True).returncode:
            assert time.monotonic() < deadline, "etcd did not start"
            time.sleep(0.1)
        for n in range(150):
            subprocess.run(
                [*etcdctl, "put", f"/k/{n % 100}", str(n)], check=True, capture_output=True
            )
        subprocess.run([*etcdctl, "del", "/k/7"], check=True, capture_output=True)
        subprocess.run([*etcdctl, "compact", "120"], check=True, capture_output=True)
        path = tmp_path / "snapshot.db"
        subprocess.run([*etcdctl, "snapshot", "save", str(path)], check=True, capture_output=True)
        yield path
    finally:
        etcd.terminate()
        etcd.wait(timeout=20)


def test_the_revision_is_what_etcdutl_reports(snapshot: Path, etcd_version: str) -> None:
    status = subprocess.run(
        [etcd_program(etcd_version, "etcdutl"), "snapshot", "status", str(snapshot), "-w", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    expected = json.loads(status.stdout)
    facts = read_snapshot(str(snapshot))
    assert facts.revision == expected["revision"] == 152  # 150 puts, 1 delete, from revision 1
    assert facts.size == os.path.getsize(snapshot) - 32


def test_a_cut_or_altered_snapshot_is_refused(snapshot: Path, tmp_path: Path) -> None:
    data = snapshot.read_bytes()
    cut = tmp_path / "cut.db"
    cut.write_bytes(data[:-100])
    with pytest.raises(AgentError, match="is not a database plus etcd's SHA-256"):
        read_snapshot(str(cut))
    altered = tmp_path / "altered.db"
    altered.write_bytes(data[:8192] + bytes([data[8192] ^ 1]) + data[8193:])
    with pytest.raises(AgentError, match="does not match the database; the snapshot is damaged"):
        read_snapshot(str(altered))


def test_etcdutl_restores_the_empty_snapshot_into_scratch(
    tmp_path: Path, etcd_version: str
) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(empty_snapshot())
    scratch = tmp_path / "scratch"
    result = subprocess.run(
        [
            etcd_program(etcd_version, "etcdutl"),
            "snapshot",
            "restore",
            str(empty),
            f"--data-dir={scratch}",
            "--name=etcd-0",
            "--initial-cluster=etcd-0=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert member_data_state(str(scratch)) == "present"


def test_pruning_keeps_the_newest_of_this_release_and_touches_nothing_else() -> None:
    names = [
        "etcd-20261207T100000Z-r10.db",
        "etcd-20261207T110000Z-r20.db",
        "etcd-20261207T120000Z-r30.db",
        "etcd-other-20261207T090000Z-r5.db",
        "etcd-20261207T080000Z-r1.db.part",
        "notes.txt",
    ]
    assert to_prune(names, "etcd", 2) == ["etcd-20261207T100000Z-r10.db"]
    assert to_prune(names, "etcd", 3) == []
    assert to_prune(names, "etcd-other", 1) == []
    when = datetime.datetime(2026, 12, 7, 12, 0, 5, tzinfo=datetime.UTC)
    assert snapshot_name("etcd", when, 42) == "etcd-20261207T120005Z-r42.db"


def test_backup_to_a_directory_names_stores_and_prunes(snapshot: Path, tmp_path: Path) -> None:
    target = tmp_path / "claim"
    target.mkdir()
    (target / "etcd-20261201T000000Z-r3.db").write_bytes(b"old")
    (target / "keep-me.txt").write_text("not a snapshot")
    now = datetime.datetime(2026, 12, 7, 12, 0, 0, tzinfo=datetime.UTC)
    code = run_backup({}, Log("backup"), str(snapshot), "etcd", 1, str(target), False, now)
    assert code == 0
    assert sorted(os.listdir(target)) == ["etcd-20261207T120000Z-r152.db", "keep-me.txt"]
    assert (target / "etcd-20261207T120000Z-r152.db").read_bytes() == snapshot.read_bytes()
    assert prune_directory(str(target), "etcd", 1) == []


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path / "s3")
    yield server
    server.stop()


def test_the_bucket_round_trip_over_https_with_a_private_ca(
    snapshot: Path, tmp_path: Path, s3: S3Server
) -> None:
    env = s3.env(prefix="prod/")
    for hour in (9, 10, 11):
        when = datetime.datetime(2026, 12, 7, hour, 0, 0, tzinfo=datetime.UTC)
        assert run_backup(env, Log("backup"), str(snapshot), "etcd", 2, "", True, when) == 0
    client = S3Client(S3Settings.from_env(env))
    assert sorted(client.list_keys("prod/")) == [
        "prod/etcd-20261207T100000Z-r152.db",
        "prod/etcd-20261207T110000Z-r152.db",
    ]
    fetched = tmp_path / "fetched.db"
    client.get_to_file("prod/etcd-20261207T110000Z-r152.db", str(fetched))
    assert fetched.read_bytes() == snapshot.read_bytes()
    assert prune_bucket(client, "prod/", "etcd", 1) == ["prod/etcd-20261207T100000Z-r152.db"]


def in_progress_uploads(client: S3Client) -> list[str]:
    """The keys of the bucket's unfinished multipart uploads (ListMultipartUploads)."""
    root = ElementTree.fromstring(client._request("GET", query={"uploads": ""}).body)
    uploads = [e for e in root.iter() if e.tag.rpartition("}")[2] == "Upload"]
    return [k.text or "" for u in uploads for k in u if k.tag.rpartition("}")[2] == "Key"]


def test_a_file_larger_than_a_part_goes_up_in_parts(s3: S3Server, tmp_path: Path) -> None:
    client = S3Client(S3Settings.from_env(s3.env()), part_size=5 * 1024**2)
    big = tmp_path / "big.db"
    big.write_bytes(os.urandom(12 * 1024**2 + 1))  # 3 parts: 5 MiB, 5 MiB, 2 MiB + 1 byte
    sent: list[str] = []
    original = client._request

    def recording(method: str, key: str = "", **kwargs: Any) -> S3Answer:
        sent.append(f"{method} {'&'.join(sorted(kwargs.get('query') or {}))}")
        return original(method, key, **kwargs)

    client._request = recording  # type: ignore[method-assign]
    client.put_file("big.db", str(big), "not used for parts")
    assert sent == ["POST uploads", *["PUT partNumber&uploadId"] * 3, "POST uploadId"]
    fetched = tmp_path / "fetched.db"
    client.get_to_file("big.db", str(fetched))
    assert fetched.read_bytes() == big.read_bytes()
    assert in_progress_uploads(client) == []


def test_a_failed_part_aborts_the_upload(s3: S3Server, tmp_path: Path) -> None:
    client = S3Client(S3Settings.from_env(s3.env()), part_size=5 * 1024**2)
    big = tmp_path / "big.db"
    big.write_bytes(os.urandom(11 * 1024**2))
    original = client._request
    unfinished_then: list[list[str]] = []

    def second_part_fails(method: str, key: str = "", **kwargs: Any) -> S3Answer:
        if (kwargs.get("query") or {}).get("partNumber") == "2":
            unfinished_then.append(in_progress_uploads(S3Client(client.settings)))
            raise AgentError("S3 PUT part 2: connection reset")
        return original(method, key, **kwargs)

    client._request = second_part_fails  # type: ignore[method-assign]
    with pytest.raises(AgentError, match="part 2: connection reset"):
        client.put_file("big.db", str(big), "not used for parts")
    client._request = original  # type: ignore[method-assign]
    assert unfinished_then == [["big.db"]]
    assert in_progress_uploads(client) == []
    assert client.list_keys("") == []


def test_a_part_size_below_the_s3_minimum_is_refused(s3: S3Server) -> None:
    with pytest.raises(AgentError, match="S3 takes parts of 5 MiB or more"):
        S3Client(S3Settings.from_env(s3.env()), part_size=1024**2)


def test_a_wrong_secret_key_is_refused_by_the_server(s3: S3Server) -> None:
    client = S3Client(S3Settings.from_env(s3.env(secret="wrong-secret")))
    with pytest.raises(AgentError, match=r"HTTP 403"):
        client.list_keys("")


def test_a_server_certificate_from_another_ca_is_refused(s3: S3Server, tmp_path: Path) -> None:
    other = start_s3_server(tmp_path / "other")
    try:
        env = {**s3.env(), "ETCD_AGENT_S3_CA_FILE": str(other.ca_file)}
        with pytest.raises(AgentError, match="CERTIFICATE_VERIFY_FAILED"):
            S3Client(S3Settings.from_env(env)).list_keys("")
    finally:
        other.stop()


@pytest.mark.parametrize(
    ("query", "signature"),
    [
        # The examples of Amazon S3's documentation on Signature Version 4 (single chunk):
        # "GET Bucket (List Objects)" and "GET Bucket Lifecycle".
        (
            {"max-keys": "2", "prefix": "J"},
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
        ({"lifecycle": ""}, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
    ],
    ids=["list-objects", "lifecycle"],
)
def test_signatures_match_the_examples_of_the_s3_documentation(
    query: dict[str, str], signature: str
) -> None:
    settings = S3Settings(
        endpoint="https://examplebucket.s3.amazonaws.com",
        bucket="examplebucket",
        prefix="",
        region="us-east-1",
        path_style=False,
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ca_file="",
    )
    when = datetime.datetime(2013, 5, 24, 0, 0, 0, tzinfo=datetime.UTC)
    headers = sign_v4(
        "GET", "examplebucket.s3.amazonaws.com", "/", query, EMPTY_SHA256, settings, when
    )
    assert headers["authorization"].endswith(f"Signature={signature}")


@pytest.mark.parametrize(
    ("data", "record", "name", "state", "action"),
    [
        ("absent", "absent", "etcd-0", "new", "restore"),
        ("absent", "disabled", "etcd-2", "new", "restore"),
        ("present", "absent", "etcd-0", "new", "skip"),
        ("damaged", "absent", "etcd-0", "new", "skip"),
        ("absent", "present", "etcd-0", "new", "skip"),
        ("absent", "absent", "etcd-3", "new", "skip"),
        ("absent", "absent", "etcd-0", "existing", "skip"),
        ("absent", "unknown", "etcd-0", "new", "wait"),
    ],
    ids=[
        "fresh",
        "no-record-kept",
        "data",
        "damaged-data",
        "cluster-formed",
        "not-bootstrap",
        "state-existing",
        "record-unreadable",
    ],
)
def test_a_member_restores_only_where_it_would_bootstrap_new(
    data: str, record: str, name: str, state: str, action: str
) -> None:
    bootstrap = ("etcd-0", "etcd-1", "etcd-2")
    assert decide_restore(data, record, name, bootstrap, state)[0] == action


def test_prepare_adopts_staged_data_only_into_an_empty_data_directory(
    snapshot: Path, tmp_path: Path, etcd_version: str
) -> None:
    volume = tmp_path / "volume"
    staged = volume / "restore"
    staged.mkdir(parents=True)
    (staged / "source.json").write_text(json.dumps({"from": "pvc:/x.db", "revision": 152}))
    subprocess.run(
        [
            etcd_program(etcd_version, "etcdutl"),
            "snapshot",
            "restore",
            str(snapshot),
            f"--data-dir={staged / 'data'}",
            "--name=etcd-0",
            "--initial-cluster=etcd-0=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        ],
        check=True,
        capture_output=True,
    )
    data = volume / "data"
    assert adopt_restored_data(str(data), "").startswith("restored from pvc:/x.db (revision 152")
    assert member_data_state(str(data)) == "present"
    assert not staged.exists()
    # Staged again beside data that is there now: the data is never replaced.
    staged.mkdir()
    (staged / "source.json").write_text(json.dumps({"from": "pvc:/y.db"}))
    (staged / "data").mkdir()
    before = sorted(p.name for p in (data / "member").iterdir())
    assert adopt_restored_data(str(data), "") == ""
    assert sorted(p.name for p in (data / "member").iterdir()) == before
    assert not staged.exists()
