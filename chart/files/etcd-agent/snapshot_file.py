"""An etcd snapshot file as `etcdctl snapshot save` writes it: etcd's bbolt database followed by
the SHA-256 of the database, which etcd appends to the stream.

The backup names each snapshot by its revision, and the Python step cannot read what the etcdutl
check printed (the etcd image has no shell to hand its output over), so this module reads the
revision itself, the way `etcdutl snapshot status` defines it: the main revision of the last key
in the `key` bucket. It reads bbolt's pages directly (meta page, branch and leaf pages, inline
buckets) and nothing else; the etcdutl check stays the gate for the file's integrity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from errors import AgentError

HASH_SIZE = hashlib.sha256().digest_size
BOLT_MAGIC = 0xED0CDAED
PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
META = struct.Struct("<IIIIQQQQQQ")  # magic .. txid, checksum
BRANCH_ELEMENT = struct.Struct("<IIQ")  # pos, ksize, pgid
LEAF_ELEMENT = struct.Struct("<IIII")  # flags, pos, ksize, vsize
BUCKET_HEADER = struct.Struct("<QQ")  # root pgid, sequence
BRANCH_PAGE, LEAF_PAGE = 0x01, 0x02
BUCKET_LEAF = 0x01
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3
CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class SnapshotFacts:
    size: int
    sha256: str  # of the database, as etcd appended it
    file_sha256: str  # of the whole file, database and appended hash (what an upload signs)
    revision: int


def _fnv1a64(data: bytes) -> int:
    value = FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


def verify_hash(path: str) -> tuple[int, str, str]:
    """(database size, its SHA-256, the whole file's SHA-256) after checking the hash etcd
    appended; AgentError when the file is cut short or altered."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            db_size = size - HASH_SIZE
            # bbolt files are whole pages (multiples of 512 bytes); etcd appends 32 bytes.
            if size < HASH_SIZE or db_size % 512:
                raise AgentError(
                    f"{path}: {size} bytes is not a database plus etcd's SHA-256; the snapshot"
                    " is cut short or is not from `etcdctl snapshot save`"
                )
            digest, whole = hashlib.sha256(), hashlib.sha256()
            remaining = db_size
            while remaining:
                chunk = handle.read(min(CHUNK, remaining))
                if not chunk:
                    raise AgentError(f"{path}: shorter than its size while reading")
                digest.update(chunk)
                whole.update(chunk)
                remaining -= len(chunk)
            appended = handle.read(HASH_SIZE)
    except OSError as err:
        raise AgentError(f"{path}: cannot read the snapshot: {err.strerror}") from err
    if digest.digest() != appended:
        raise AgentError(
            f"{path}: the SHA-256 etcd appended does not match the database; the snapshot is"
            " damaged"
        )
    whole.update(appended)
    return db_size, digest.hexdigest(), whole.hexdigest()


class BoltReader:
    """Read-only walk over a bbolt file's B+trees."""

    def __init__(self, handle: BinaryIO, path: str):
        self.handle = handle
        self.path = path
        self.page_size = 4096
        first = self._read(0, 4096)
        metas = [self._meta(first[:4096])]
        self.page_size = metas[0][2] if metas[0] else 4096
        metas.append(self._meta(self._read(self.page_size, self.page_size)))
        valid = [meta for meta in metas if meta]
        if not valid:
            raise AgentError(f"{path}: not a bbolt database (no valid meta page)")
        newest = max(valid, key=lambda meta: meta[8])
        self.root = int(newest[4])

    def _read(self, offset: int, size: int) -> bytes:
        self.handle.seek(offset)
        data = self.handle.read(size)
        if len(data) < size:
            raise AgentError(f"{self.path}: page at {offset} lies past the end of the file")
        return data

    def _meta(self, page: bytes) -> tuple[int, ...] | None:
        offset = PAGE_HEADER.size
        fields = META.unpack_from(page, offset)
        if fields[0] != BOLT_MAGIC:
            return None
        if _fnv1a64(page[offset : offset + META.size - 8]) != fields[9]:
            return None
        return fields

    def page(self, pgid: int) -> bytes:
        header = self._read(pgid * self.page_size, PAGE_HEADER.size)
        overflow = PAGE_HEADER.unpack(header)[3]
        return self._read(pgid * self.page_size, (overflow + 1) * self.page_size)

    def entries(self, page: bytes) -> Iterator[tuple[bytes, bytes, int]]:
        """(key, value, flags) of every leaf element under `page`, in key order."""
        _, flags, count, _ = PAGE_HEADER.unpack_from(page)
        base = PAGE_HEADER.size
        if flags & BRANCH_PAGE:
            for i in range(count):
                at = base + i * BRANCH_ELEMENT.size
                _, _, child = BRANCH_ELEMENT.unpack_from(page, at)
                yield from self.entries(self.page(child))
        elif flags & LEAF_PAGE:
            for i in range(count):
                at = base + i * LEAF_ELEMENT.size
                element_flags, pos, ksize, vsize = LEAF_ELEMENT.unpack_from(page, at)
                start = at + pos
                yield (
                    page[start : start + ksize],
                    page[start + ksize : start + ksize + vsize],
                    (element_flags),
                )
        else:
            raise AgentError(f"{self.path}: unexpected page type {flags:#x} in a bucket")

    def last_key(self, bucket_header: bytes) -> bytes:
        """The greatest key of a bucket (b"" when it is empty)."""
        root, _ = BUCKET_HEADER.unpack_from(bucket_header)
        # An inline bucket's one page follows its header.
        page = bucket_header[BUCKET_HEADER.size :] if root == 0 else self.page(root)
        while True:
            _, flags, count, _ = PAGE_HEADER.unpack_from(page)
            if count == 0:
                return b""
            at = PAGE_HEADER.size + (count - 1) * LEAF_ELEMENT.size
            if flags & BRANCH_PAGE:
                page = self.page(BRANCH_ELEMENT.unpack_from(page, at)[2])
            elif flags & LEAF_PAGE:
                _, pos, ksize, _ = LEAF_ELEMENT.unpack_from(page, at)
                return page[at + pos : at + pos + ksize]
            else:
                raise AgentError(f"{self.path}: unexpected page type {flags:#x} in a bucket")

    def buckets(self) -> Iterator[tuple[bytes, bytes]]:
        for name, value, flags in self.entries(self.page(self.root)):
            if flags & BUCKET_LEAF:
                yield name, value


def read_snapshot(path: str) -> SnapshotFacts:
    """Check etcd's hash, then read the revision as `etcdutl snapshot status` reports it: the
    main revision of the last entry in the `key` bucket, found by walking down the rightmost
    path of that bucket's B+tree (the number of keys is left to the etcdutl check, which prints
    it: counting them here would read every page)."""
    size, sha256, file_sha256 = verify_hash(path)
    revision = 0
    try:
        with open(path, "rb") as handle:
            reader = BoltReader(handle, path)
            for name, header in reader.buckets():
                if name == b"key":
                    last = reader.last_key(header)
                    revision = struct.unpack_from(">Q", last)[0] if len(last) >= 8 else 0
    except OSError as err:
        raise AgentError(f"{path}: cannot read the snapshot: {err.strerror}") from err
    except struct.error as err:
        raise AgentError(f"{path}: damaged bbolt page: {err}") from err
    return SnapshotFacts(size, sha256, file_sha256, revision)


# The buckets a fresh etcd database holds (etcdutl writes into some of them while restoring).
ETCD_BUCKETS = (
    b"alarm",
    b"auth",
    b"authRoles",
    b"authUsers",
    b"cluster",
    b"key",
    b"lease",
    b"members",
    b"members_removed",
    b"meta",
)


def _root_leaf(page_size: int) -> bytearray:
    """The root bucket's leaf page holding every etcd bucket, each empty and inline (a bucket
    header with root 0, then an empty leaf page)."""
    names = sorted(ETCD_BUCKETS)
    inline = BUCKET_HEADER.pack(0, 0) + PAGE_HEADER.pack(0, LEAF_PAGE, 0, 0)
    page = bytearray(page_size)
    PAGE_HEADER.pack_into(page, 0, 3, LEAF_PAGE, len(names), 0)
    data = PAGE_HEADER.size + LEAF_ELEMENT.size * len(names)
    for i, name in enumerate(names):
        element = PAGE_HEADER.size + LEAF_ELEMENT.size * i
        LEAF_ELEMENT.pack_into(page, element, BUCKET_LEAF, data - element, len(name), len(inline))
        page[data : data + len(name) + len(inline)] = name + inline
        data += len(name) + len(inline)
    return page


def empty_snapshot(page_size: int = 4096) -> bytes:
    """A snapshot of an empty etcd database (two meta pages, an empty freelist, the root leaf
    with etcd's buckets, all empty) with etcd's SHA-256 appended. The restore init container runs
    `etcdutl snapshot restore` on every start, and the etcd image has no shell to skip it; when
    this member must not be restored, it restores this into scratch space, which `prepare`
    discards."""
    pages = bytearray()
    for txid in (0, 1):
        page = bytearray(page_size)
        PAGE_HEADER.pack_into(page, 0, txid, 0x04, 0, 0)
        fields = [BOLT_MAGIC, 2, page_size, 0, 3, 0, 2, 4, txid]
        META.pack_into(page, PAGE_HEADER.size, *fields, 0)
        body = bytes(page[PAGE_HEADER.size : PAGE_HEADER.size + META.size - 8])
        META.pack_into(page, PAGE_HEADER.size, *fields, _fnv1a64(body))
        pages += page
    freelist = bytearray(page_size)
    PAGE_HEADER.pack_into(freelist, 0, 2, 0x10, 0, 0)
    pages += freelist + _root_leaf(page_size)
    return bytes(pages) + hashlib.sha256(pages).digest()
