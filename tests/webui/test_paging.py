"""The key listing: a tree on "/" built from keys_only ranges with a limit, page by page."""

from __future__ import annotations

import base64
from typing import Any

from etcd_views import EtcdViews, child_of, range_bounds
from fake_etcd import FakeEtcd


def views(keys: dict[bytes, bytes]) -> tuple[EtcdViews, FakeEtcd]:
    fake = FakeEtcd(keys)
    return EtcdViews(lambda: fake, ["http://etcd:2379"]), fake  # type: ignore[arg-type,return-value]


def displays(page: dict[str, Any]) -> list[tuple[str, bool]]:
    return [(e["display"], e["folder"]) for e in page["entries"]]


def test_child_of_gives_the_next_folder_or_the_key() -> None:
    assert child_of(b"", b"/registry/pods/a") == (b"/", True)
    assert child_of(b"/", b"/registry/pods/a") == (b"/registry/", True)
    assert child_of(b"/registry/", b"/registry/pods") == (b"/registry/pods", False)
    assert child_of(b"/a/", b"/a/b/") == (b"/a/b/", False)  # a key that ends in "/"
    assert child_of(b"", b"plain") == (b"plain", False)


def test_the_empty_prefix_is_the_whole_keyspace() -> None:
    assert range_bounds(b"") == (b"\x00", b"\x00")
    assert range_bounds(b"/a/") == (b"/a/", b"/a0")


def test_ten_thousand_keys_page_by_page_with_keys_only_ranges() -> None:
    keys = {f"/flat/{i:05d}".encode(): b"v" for i in range(10_000)}
    ui, fake = views(keys)
    seen: list[str] = []
    after = b""
    pages = 0
    while True:
        page = ui.keys(b"/flat/", after, limit=1000)
        pages += 1
        if pages == 1:
            assert page["count"] == 10_000
        else:
            assert page["count"] is None  # counted once, on the first page
        seen += [e["display"] for e in page["entries"]]
        if not page["next"]:
            break
        after = base64.b64decode(page["next"])
    assert seen == sorted(k.decode() for k in keys)
    assert pages == 10
    ranges = [body for path, body in fake.calls if path == "/v3/kv/range"]
    assert len(ranges) == 10
    assert all(body["keys_only"] and body["limit"] == 1000 for body in ranges)


def test_folders_are_listed_once_and_skipped_in_one_step() -> None:
    keys = {f"/registry/pods/ns/p{i}".encode(): b"" for i in range(500)}
    keys |= {f"/registry/secrets/ns/s{i}".encode(): b"" for i in range(500)}
    keys[b"/registry/health"] = b"ok"
    ui, fake = views(keys)
    page = ui.keys(b"/registry/", limit=100)
    assert displays(page) == [
        ("/registry/health", False),
        ("/registry/pods/", True),
        ("/registry/secrets/", True),
    ]
    assert page["count"] == 1001
    assert page["next"] == ""
    # the first range holds health and the first pod; one range per folder after that, the
    # last of them finding nothing past the secrets
    assert len([c for c in fake.calls if c[0] == "/v3/kv/range"]) == 3


def test_a_page_ends_at_the_limit_and_the_next_one_goes_on_from_there() -> None:
    ui, _ = views({f"/k/{c}".encode(): b"" for c in "abcde"})
    first = ui.keys(b"/k/", limit=2)
    assert displays(first) == [("/k/a", False), ("/k/b", False)]
    assert base64.b64decode(first["next"]) == b"/k/b\x00"
    second = ui.keys(b"/k/", base64.b64decode(first["next"]), limit=3)
    assert displays(second) == [("/k/c", False), ("/k/d", False), ("/k/e", False)]
    assert second["next"] == ""


def test_root_listing_shows_slash_as_a_folder_and_other_keys() -> None:
    ui, _ = views({b"/a/b": b"", b"foo": b"", b"bar/baz": b""})
    assert displays(ui.keys(b"")) == [("/", True), ("bar/", True), ("foo", False)]


def test_password_login_comes_before_the_first_call() -> None:
    fake = FakeEtcd({b"x": b"1"})
    ui = EtcdViews(lambda: fake, ["http://etcd:2379"], password_login=True)  # type: ignore[arg-type,return-value]
    ui.key(b"x")
    ui.key(b"x")
    assert [path for path, _ in fake.calls] == [
        "/v3/auth/authenticate",
        "/v3/kv/range",
        "/v3/kv/range",
    ]
