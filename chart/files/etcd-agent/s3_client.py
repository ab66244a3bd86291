"""An S3-compatible bucket over http.client: AWS Signature Version 4, path-style or
virtual-hosted addressing, a private CA. Only what backups and restores need: put a file (in one
PUT, or as a multipart upload when it is larger than one part), get one, list keys under a
prefix, delete a key."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import hmac
import http.client
import io
import os
import urllib.parse
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from typing import BinaryIO, NamedTuple
from xml.sax.saxutils import escape

from errors import AgentError
from etcd_client import verifying_context

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
S3_NAMESPACE = "{http://s3.amazonaws.com/doc/2006-03-01/}"
# A file larger than one part goes up as a multipart upload, part by part, each signed with its
# own SHA-256 (read twice from the file: a part is never held in memory). AWS S3 takes parts of
# 5 MiB to 5 GiB, at most 10,000 of them: 256 MiB parts carry snapshots up to 2.5 TB, and a
# failed part costs 256 MiB again, not the whole snapshot.
PART_SIZE = 256 * 1024**2
MIN_PART_SIZE = 5 * 1024**2
MAX_PARTS = 10_000
UNRESERVED = "-_.~"


@dataclasses.dataclass(frozen=True)
class S3Settings:
    endpoint: str
    bucket: str
    prefix: str
    region: str
    path_style: bool
    access_key_id: str
    secret_access_key: str
    ca_file: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Settings:
        settings = cls(
            endpoint=env.get("ETCD_AGENT_S3_ENDPOINT", "").rstrip("/"),
            bucket=env.get("ETCD_AGENT_S3_BUCKET", ""),
            prefix=env.get("ETCD_AGENT_S3_PREFIX", ""),
            region=env.get("ETCD_AGENT_S3_REGION") or "us-east-1",
            path_style=env.get("ETCD_AGENT_S3_PATH_STYLE", "false") == "true",
            access_key_id=env.get("ETCD_AGENT_S3_ACCESS_KEY_ID", ""),
            secret_access_key=env.get("ETCD_AGENT_S3_SECRET_ACCESS_KEY", ""),
            ca_file=env.get("ETCD_AGENT_S3_CA_FILE", ""),
        )
        required = {
            "ETCD_AGENT_S3_ENDPOINT": settings.endpoint,
            "ETCD_AGENT_S3_BUCKET": settings.bucket,
            "ETCD_AGENT_S3_ACCESS_KEY_ID": settings.access_key_id,
            "ETCD_AGENT_S3_SECRET_ACCESS_KEY": settings.secret_access_key,
        }
        unset = [name for name, value in required.items() if not value]
        if unset:
            raise AgentError(f"environment variable {', '.join(unset)} not set (backup.s3.*)")
        if urllib.parse.urlsplit(settings.endpoint).scheme not in ("http", "https"):
            raise AgentError(
                f"ETCD_AGENT_S3_ENDPOINT: {settings.endpoint!r} is not an http(s):// URL"
            )
        return settings


def _quote(text: str, safe: str = UNRESERVED) -> str:
    return urllib.parse.quote(text, safe=safe)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign_v4(
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    payload_sha256: str,
    settings: S3Settings,
    now: datetime.datetime,
) -> dict[str, str]:
    """The headers of a request signed with AWS Signature Version 4 (service `s3`)."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"host": host, "x-amz-content-sha256": payload_sha256, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            _quote(path, safe=UNRESERVED + "/"),
            "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items())),
            "".join(f"{name}:{headers[name].strip()}\n" for name in sorted(headers)),
            signed,
            payload_sha256,
        ]
    )
    scope = f"{day}/{settings.region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{settings.secret_access_key}".encode(), day)
    for part in (settings.region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={settings.access_key_id}/{scope},"
        f" SignedHeaders={signed}, Signature={signature}"
    )
    return headers


def _error_text(body: bytes) -> str:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return body.decode(errors="replace").strip()[:300]
    code = root.findtext("Code") or ""
    message = root.findtext("Message") or ""
    return f"{code}: {message}".strip(": ")


class _FileSlice:
    """`size` bytes of an open file from `offset`, read as a request body."""

    def __init__(self, handle: BinaryIO, offset: int, size: int):
        self.handle, self.left = handle, size
        handle.seek(offset)

    def read(self, wanted: int = -1) -> bytes:
        count = self.left if wanted < 0 else min(wanted, self.left)
        data = self.handle.read(count) if count else b""
        self.left -= len(data)
        return data


def _sha256_of(handle: BinaryIO, offset: int, size: int) -> str:
    digest = hashlib.sha256()
    piece = _FileSlice(handle, offset, size)
    while chunk := piece.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


class S3Answer(NamedTuple):
    body: bytes  # empty when written to a file
    headers: dict[str, str]  # names in lower case


class S3Client:
    def __init__(self, settings: S3Settings, timeout: float = 120.0, part_size: int = PART_SIZE):
        if part_size < MIN_PART_SIZE:
            raise AgentError(f"S3 part size {part_size}: S3 takes parts of 5 MiB or more")
        self.settings = settings
        self.timeout = timeout
        self.part_size = part_size
        parts = urllib.parse.urlsplit(settings.endpoint)
        self.https = parts.scheme == "https"
        self.netloc = parts.netloc
        self.host = parts.netloc if settings.path_style else f"{settings.bucket}.{parts.netloc}"
        self.context = verifying_context(settings.ca_file or None) if self.https else None

    def _path(self, key: str = "") -> str:
        if self.settings.path_style:
            return f"/{self.settings.bucket}/{key}" if key else f"/{self.settings.bucket}"
        return f"/{key}"

    def where(self, key: str) -> str:
        return f"s3://{self.settings.bucket}/{key}"

    def _request(
        self,
        method: str,
        key: str = "",
        query: Mapping[str, str] | None = None,
        body: BinaryIO | _FileSlice | None = None,
        size: int = 0,
        payload_sha256: str = EMPTY_SHA256,
        into: BinaryIO | None = None,
    ) -> S3Answer:
        query = dict(query or {})
        path = self._path(key)
        now = datetime.datetime.now(datetime.UTC)
        headers = sign_v4(method, self.host, path, query, payload_sha256, self.settings, now)
        if body is not None:
            headers["content-length"] = str(size)
        target = _quote(path, safe=UNRESERVED + "/")
        if query:
            target += "?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))
        connection: http.client.HTTPConnection
        if self.https:
            connection = http.client.HTTPSConnection(
                self.host, timeout=self.timeout, context=self.context
            )
        else:
            connection = http.client.HTTPConnection(self.host, timeout=self.timeout)
        what = f"S3 {method} {self.where(key) if key else self.settings.endpoint}"
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            if response.status >= 300:
                text = _error_text(response.read())
                raise AgentError(f"{what}: HTTP {response.status} {text}")
            headers = {k.lower(): v for k, v in response.getheaders()}
            if into is None:
                return S3Answer(response.read(), headers)
            while chunk := response.read(1 << 20):
                into.write(chunk)
            return S3Answer(b"", headers)
        except (OSError, http.client.HTTPException) as err:
            raise AgentError(f"{what}: {err}") from None
        finally:
            connection.close()

    def put_file(self, key: str, path: str, file_sha256: str) -> None:
        size = os.path.getsize(path)
        if size <= self.part_size:
            with open(path, "rb") as handle:
                self._request("PUT", key, body=handle, size=size, payload_sha256=file_sha256)
            return
        parts = -(-size // self.part_size)
        if parts > MAX_PARTS:
            raise AgentError(
                f"{path}: {size} bytes would take {parts} parts of {self.part_size} bytes, more"
                f" than the {MAX_PARTS} S3 allows"
            )
        self._put_multipart(key, path, size)

    def _put_multipart(self, key: str, path: str, size: int) -> None:
        started = ElementTree.fromstring(self._request("POST", key, query={"uploads": ""}).body)
        ns = S3_NAMESPACE if started.tag.startswith(S3_NAMESPACE) else ""
        upload_id = started.findtext(f"{ns}UploadId") or ""
        if not upload_id:
            raise AgentError(f"S3 POST {self.where(key)}?uploads: the answer has no UploadId")
        try:
            etags: list[str] = []
            with open(path, "rb") as handle:
                for number, offset in enumerate(range(0, size, self.part_size), start=1):
                    length = min(self.part_size, size - offset)
                    part_sha256 = _sha256_of(handle, offset, length)  # a read of the part
                    answer = self._request(
                        "PUT",
                        key,
                        query={"partNumber": str(number), "uploadId": upload_id},
                        body=_FileSlice(handle, offset, length),  # the part again, as sent
                        size=length,
                        payload_sha256=part_sha256,
                    )
                    if "etag" not in answer.headers:
                        raise AgentError(f"S3 PUT {self.where(key)} part {number}: no ETag")
                    etags.append(answer.headers["etag"])
            self._complete(key, upload_id, etags)
        except AgentError:
            # Abort, or the bucket keeps (and bills) the parts; the error that matters is the
            # first one.
            with contextlib.suppress(AgentError):
                self._request("DELETE", key, query={"uploadId": upload_id})
            raise

    def _complete(self, key: str, upload_id: str, etags: list[str]) -> None:
        listing = "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
            for number, etag in enumerate(etags, start=1)
        )
        document = (
            f'<CompleteMultipartUpload xmlns="{S3_NAMESPACE[1:-1]}">{listing}'
            "</CompleteMultipartUpload>"
        ).encode()
        answer = self._request(
            "POST",
            key,
            query={"uploadId": upload_id},
            body=io.BytesIO(document),
            size=len(document),
            payload_sha256=hashlib.sha256(document).hexdigest(),
        ).body
        # S3 may answer 200 and put the error in the body, once the upload has taken a while.
        if answer.strip():
            root = ElementTree.fromstring(answer)
            if root.tag.rpartition("}")[2] == "Error":
                raise AgentError(f"S3 POST {self.where(key)}?uploadId: {_error_text(answer)}")

    def get_to_file(self, key: str, path: str) -> None:
        with open(path, "wb") as handle:
            self._request("GET", key, into=handle)
            handle.flush()
            os.fsync(handle.fileno())

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            root = ElementTree.fromstring(self._request("GET", query=query).body)
            ns = S3_NAMESPACE if root.tag.startswith(S3_NAMESPACE) else ""
            keys += [item.findtext(f"{ns}Key") or "" for item in root.iter(f"{ns}Contents")]
            token = root.findtext(f"{ns}NextContinuationToken") or ""
            if root.findtext(f"{ns}IsTruncated") != "true" or not token:
                return [key for key in keys if key]

    def delete(self, key: str) -> None:
        self._request("DELETE", key)
