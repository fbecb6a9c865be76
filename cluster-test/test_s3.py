"""test_s3.py - the storage role's S3-compatible API against real clients: boto3 (the pinned,
newest SDK, with its default request checksums, and Debian's older python3-boto3), the aws CLI
v2, curl and hand-built requests (signed with botocore's SigV4 signer, then tampered with).

One node serves every test of the module (127.0.50.1, S3 API on :9000, website on :9080); each
test works in buckets of its own. The restart test (127.0.50.2) and the checksum-less PUT test
(127.0.50.3) run nodes of their own. Hand-built PUTs carry x-amz-checksum-crc32, as boto3 sends
it, so that each test fails only for what it is about; a PUT without any checksum has a test of
its own. Node logs are kept under cluster-test/logs/test_s3/ when a test of the module fails."""
import base64
import datetime
import hashlib
import io
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import time
import zlib
from contextlib import contextmanager
from types import SimpleNamespace
from unittest import mock
from urllib.parse import quote

import boto3
import botocore
import botocore.auth
import botocore.httpchecksum
import pytest
import requests
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

import harness
from harness import Node, wait_for

IP = "127.0.50.1"
S3 = f"http://{IP}:9000"
WEB = f"http://{IP}:9080"
MiB = 1 << 20
LOGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logs", "test_s3")
AWS_CLI = "/usr/bin/aws" if os.path.exists("/usr/bin/aws") else shutil.which("aws")
DEBIAN_PY = "/usr/bin/python3"


# --- helpers ---------------------------------------------------------------------------------

def create_key(node, name, can_create=True):
    """A new access key (the control plane may still be electing its leader: retry)."""
    args = ["key", "create", name, "--json"] + ([] if can_create else ["--no-create-bucket"])

    def attempt():
        r = node.cli(*args)
        return json.loads(r.stdout) if r.returncode == 0 else None
    return wait_for(attempt, 15, f"`gureum key create {name}` to succeed")


def start_own(node, timeout=15):
    """Start `node` and make sure what answers at its address is this very process: another run
    of this module on the same machine would hold the same addresses."""
    node.start()
    idf = os.path.join(node.data, "node-id")

    def mine():
        if not node.alive():
            raise AssertionError(f"{node.name} exited: {node.log_text()[-300:]}")
        if not os.path.exists(idf):
            return False
        with open(idf) as f:
            return node.status()["id"] == f.read().strip()
    wait_for(mine, timeout, f"{node.name} to serve {node.ip} (is another run of test_s3 active?)")
    return node


def client(key, endpoint=S3, **cfg):
    kw = {"signature_version": "s3v4", "s3": {"addressing_style": "path"},
          "retries": {"max_attempts": 1}, **cfg}
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key["access_key_id"] if key else None,
                        aws_secret_access_key=key["secret_access_key"] if key else None,
                        config=Config(**kw))


@contextmanager
def s3_error(code, status=None):
    """Expect a ClientError with this S3 error code (and HTTP status)."""
    with pytest.raises(ClientError) as ei:
        yield ei
    err = ei.value.response
    assert err["Error"]["Code"] == code, err
    if status is not None:
        assert err["ResponseMetadata"]["HTTPStatusCode"] == status, err


def b64(b):
    return base64.b64encode(b).decode()


def md5_hex(b):
    return hashlib.md5(b).hexdigest()


def crc32_b64(data):
    return b64(struct.pack(">I", zlib.crc32(data) & 0xFFFFFFFF))


_CRC32C_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c_b64(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return b64(struct.pack(">I", crc ^ 0xFFFFFFFF))


def sha256_b64(data):
    return b64(hashlib.sha256(data).digest())


class _PayloadAuth(S3SigV4Auth):
    """botocore's S3 signer with a given x-amz-content-sha256 (UNSIGNED-PAYLOAD, STREAMING-...)."""

    def __init__(self, creds, region, payload):
        super().__init__(creds, "s3", region)
        self._payload = payload

    def payload(self, request):
        return self._payload


def sign(key, method, url, body=b"", headers=None, when=None, region="us-east-1", payload=None):
    """Headers of a SigV4-signed request (botocore's signer; the payload's hash unless `payload`
    names another x-amz-content-sha256). `when` signs as if the clock said so."""
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    creds = Credentials(key["access_key_id"], key["secret_access_key"])
    auth = _PayloadAuth(creds, region, payload) if payload else S3SigV4Auth(creds, "s3", region)
    if when is None:
        auth.add_auth(req)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            auth.add_auth(req)
    return dict(req.headers.items())


def raw(method, path, key=None, body=b"", headers=None, host=None, when=None, sent_body=None,
        base=S3, timeout=5, payload=None, checksum=True):
    """One request with `requests`; signed by `key` unless None. `sent_body` replaces the body
    after signing (tampering). `host` sets the Host header (virtual-hosted style). A PutObject
    carries x-amz-checksum-crc32 of what is sent, as boto3 sends it, unless checksum=False
    (a PUT without it is its own test: test_put_without_checksum_...)."""
    url = base + path
    h = dict(headers or {})
    if host:
        h["Host"] = host
    if checksum and method == "PUT" and "?" not in path and \
            not str(payload or "").startswith("STREAMING"):
        h.setdefault("x-amz-checksum-crc32", crc32_b64(body if sent_body is None else sent_body))
    if key:
        h = sign(key, method, url, body, h, when, payload=payload)
    return requests.request(method, url, data=body if sent_body is None else sent_body,
                            headers=h, timeout=timeout)


def err_code(r):
    """The <Code> of an S3 XML error document."""
    t = r.text
    a, b = t.find("<Code>"), t.find("</Code>")
    return t[a + 6:b] if a >= 0 and b > a else None


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def node_serves(ctx):
    """True if the node is alive and answers a signed HeadBucket."""
    assert ctx.node.alive(), f"node died; log tail:\n{ctx.node.log_text()[-3000:]}"
    ctx.s3a.head_bucket(Bucket=ctx.home)
    return True


# --- the node shared by the module -----------------------------------------------------------

@pytest.fixture(scope="module")
def ctx(request, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("s3"))
    node = Node(workdir, "s3", IP)
    try:
        start_own(node)
        alice = create_key(node, "alice")
        bob = create_key(node, "bob")
        carol = create_key(node, "carol", can_create=False)
        c = SimpleNamespace(node=node, workdir=workdir, alice=alice, bob=bob, carol=carol,
                            s3a=client(alice), s3b=client(bob), s3c=client(carol),
                            anon=client(None, signature_version=UNSIGNED), home="alice-home")
        wait_for(lambda: c.s3a.create_bucket(Bucket=c.home), 10, "the first bucket")
        yield c
    finally:
        try:
            node.stop()
        except Exception:
            node.kill()
        if request.session.testsfailed or not node.proc or node.proc.returncode:
            shutil.rmtree(LOGS, ignore_errors=True)
            harness.dump_logs([node], LOGS)
            print(f"\nnode log kept in {LOGS}")


def new_bucket(ctx, name, s3=None, **kw):
    (s3 or ctx.s3a).create_bucket(Bucket=name, **kw)
    return name


# --- buckets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "ab", "x" * 64, "Upper-case", "under_score", "-leading-dash", "trailing-dash-",
    "double..dot", "dot.-dash", "192.168.10.1", "xn--punycode", "ends-s3alias-x-s3alias",
    "has space"])
def test_create_bucket_invalid_names(ctx, name):
    r = raw("PUT", "/" + quote(name), ctx.alice)
    assert r.status_code == 400 and err_code(r) == "InvalidBucketName", (name, r.text)


def test_create_bucket_valid_edge_names(ctx):
    for name in ("abc", "a" * 63, "a.b-c.9", "0digits-first"):
        ctx.s3a.create_bucket(Bucket=name)
        ctx.s3a.head_bucket(Bucket=name)
        ctx.s3a.delete_bucket(Bucket=name)


def test_create_bucket_conflicts_and_permissions(ctx):
    ctx.s3a.create_bucket(Bucket="conflict-a")
    with s3_error("BucketAlreadyOwnedByYou", 409):
        ctx.s3a.create_bucket(Bucket="conflict-a")
    with s3_error("BucketAlreadyExists", 409):
        ctx.s3b.create_bucket(Bucket="conflict-a")
    with s3_error("AccessDenied", 403):
        ctx.s3c.create_bucket(Bucket="carol-may-not")
    with s3_error("AccessDenied", 403):
        ctx.anon.create_bucket(Bucket="anon-may-not")
    with s3_error("404", 404):
        ctx.s3c.head_bucket(Bucket="carol-may-not")
    # Location and the create body (a LocationConstraint) are accepted.
    r = ctx.s3b.create_bucket(Bucket="bob-located",
                              CreateBucketConfiguration={"LocationConstraint": "us-east-1"})
    assert r["Location"] == "/bob-located"


def test_list_head_location_buckets(ctx):
    for b in ("lhb-2", "lhb-1"):
        ctx.s3a.create_bucket(Bucket=b)
    ctx.s3b.create_bucket(Bucket="lhb-bob")
    r = ctx.s3a.list_buckets()
    names = [b["Name"] for b in r["Buckets"]]
    assert "lhb-1" in names and "lhb-2" in names and ctx.home in names
    assert "lhb-bob" not in names
    assert names == sorted(names)
    assert r["Owner"]["ID"] == ctx.alice["access_key_id"]
    for b in r["Buckets"]:
        assert abs((b["CreationDate"].replace(tzinfo=None) - utcnow()).total_seconds()) < 3600
    assert "lhb-bob" in [b["Name"] for b in ctx.s3b.list_buckets()["Buckets"]]
    assert [b["Name"] for b in ctx.s3c.list_buckets()["Buckets"]] == []
    r = raw("GET", "/")  # anonymous ListBuckets
    assert r.status_code == 403 and err_code(r) == "AccessDenied"

    h = ctx.s3a.head_bucket(Bucket="lhb-1")
    assert h["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    with s3_error("404", 404):
        ctx.s3a.head_bucket(Bucket="lhb-nonexistent")
    with s3_error("403", 403):
        ctx.s3a.head_bucket(Bucket="lhb-bob")
    assert ctx.s3a.get_bucket_location(Bucket="lhb-1")["LocationConstraint"] is None
    with s3_error("AccessDenied", 403):
        ctx.s3b.get_bucket_location(Bucket="lhb-1")
    with s3_error("NoSuchBucket", 404):
        ctx.s3a.get_bucket_location(Bucket="lhb-nonexistent")


def test_delete_bucket(ctx):
    b = new_bucket(ctx, "del-bucket")
    ctx.s3a.put_object(Bucket=b, Key="x", Body=b"1")
    with s3_error("BucketNotEmpty", 409):
        ctx.s3a.delete_bucket(Bucket=b)
    with s3_error("AccessDenied", 403):
        ctx.s3b.delete_bucket(Bucket=b)
    ctx.s3a.delete_object(Bucket=b, Key="x")
    r = ctx.s3a.delete_bucket(Bucket=b)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with s3_error("404", 404):
        ctx.s3a.head_bucket(Bucket=b)
    with s3_error("NoSuchBucket", 404):
        ctx.s3a.delete_bucket(Bucket=b)
    with s3_error("NoSuchBucket", 404):
        ctx.s3a.put_object(Bucket=b, Key="y", Body=b"2")
    # The name is free again, for anyone.
    ctx.s3b.create_bucket(Bucket=b)
    ctx.s3b.delete_bucket(Bucket=b)


def test_delete_bucket_with_versions_or_uploads_is_not_empty(ctx):
    b = new_bucket(ctx, "del-versions")
    ctx.s3a.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    ctx.s3a.put_object(Bucket=b, Key="k", Body=b"v1")
    ctx.s3a.delete_object(Bucket=b, Key="k")  # only a delete marker is "latest" now
    assert ctx.s3a.list_objects_v2(Bucket=b)["KeyCount"] == 0
    with s3_error("BucketNotEmpty", 409):
        ctx.s3a.delete_bucket(Bucket=b)
    for v in ctx.s3a.list_object_versions(Bucket=b).get("Versions", []) + \
            ctx.s3a.list_object_versions(Bucket=b).get("DeleteMarkers", []):
        ctx.s3a.delete_object(Bucket=b, Key=v["Key"], VersionId=v["VersionId"])
    up = ctx.s3a.create_multipart_upload(Bucket=b, Key="pending")["UploadId"]
    with s3_error("BucketNotEmpty", 409):
        ctx.s3a.delete_bucket(Bucket=b)
    ctx.s3a.abort_multipart_upload(Bucket=b, Key="pending", UploadId=up)
    ctx.s3a.delete_bucket(Bucket=b)


def test_bucket_versioning_configuration(ctx):
    b = new_bucket(ctx, "ver-config")
    r = ctx.s3a.get_bucket_versioning(Bucket=b)
    assert "Status" not in r
    ctx.s3a.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    assert ctx.s3a.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    ctx.s3a.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    assert ctx.s3a.get_bucket_versioning(Bucket=b)["Status"] == "Suspended"
    body = b"<VersioningConfiguration><Status>Sometimes</Status></VersioningConfiguration>"
    r = raw("PUT", f"/{b}?versioning", ctx.alice, body)
    assert r.status_code == 400 and err_code(r) == "MalformedXML", r.text
    r = raw("PUT", f"/{b}?versioning", ctx.alice, b"<not-xml")
    assert r.status_code == 400 and err_code(r) == "MalformedXML", r.text
    with s3_error("AccessDenied", 403):
        ctx.s3b.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    with s3_error("AccessDenied", 403):
        ctx.s3b.get_bucket_versioning(Bucket=b)


WEBSITE = {"IndexDocument": {"Suffix": "index.html"}, "ErrorDocument": {"Key": "error.html"}}


def test_bucket_website_configuration(ctx):
    b = new_bucket(ctx, "web-config")
    with s3_error("NoSuchWebsiteConfiguration", 404):
        ctx.s3a.get_bucket_website(Bucket=b)
    ctx.s3a.put_bucket_website(Bucket=b, WebsiteConfiguration=WEBSITE)
    r = ctx.s3a.get_bucket_website(Bucket=b)
    assert r["IndexDocument"] == {"Suffix": "index.html"}
    assert r["ErrorDocument"] == {"Key": "error.html"}
    ctx.s3a.put_bucket_website(Bucket=b, WebsiteConfiguration={
        "RedirectAllRequestsTo": {"HostName": "example.com", "Protocol": "https"}})
    assert ctx.s3a.get_bucket_website(Bucket=b)["RedirectAllRequestsTo"] == {
        "HostName": "example.com", "Protocol": "https"}
    with s3_error("MalformedXML", 400):  # neither an index document nor a redirect
        ctx.s3a.put_bucket_website(Bucket=b, WebsiteConfiguration={
            "ErrorDocument": {"Key": "e.html"}})
    with s3_error("AccessDenied", 403):
        ctx.s3b.put_bucket_website(Bucket=b, WebsiteConfiguration=WEBSITE)
    r = ctx.s3a.delete_bucket_website(Bucket=b)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with s3_error("NoSuchWebsiteConfiguration", 404):
        ctx.s3a.get_bucket_website(Bucket=b)


CORS = {"CORSRules": [
    {"AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["GET", "PUT"],
     "AllowedHeaders": ["x-amz-*", "content-type"], "ExposeHeaders": ["ETag"],
     "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["HEAD"]},
]}


def test_bucket_cors_configuration(ctx):
    b = new_bucket(ctx, "cors-config")
    with s3_error("NoSuchCORSConfiguration", 404):
        ctx.s3a.get_bucket_cors(Bucket=b)
    ctx.s3a.put_bucket_cors(Bucket=b, CORSConfiguration=CORS)
    rules = ctx.s3a.get_bucket_cors(Bucket=b)["CORSRules"]
    assert len(rules) == 2
    assert rules[0]["AllowedOrigins"] == ["https://app.example.com"]
    assert rules[0]["AllowedMethods"] == ["GET", "PUT"]
    assert rules[0]["AllowedHeaders"] == ["x-amz-*", "content-type"]
    assert rules[0]["ExposeHeaders"] == ["ETag"] and rules[0]["MaxAgeSeconds"] == 600
    assert rules[1]["AllowedOrigins"] == ["*"]
    r = raw("PUT", f"/{b}?cors", ctx.alice, b"<CORSConfiguration><CORSRule><AllowedMethod>GET"
            b"</AllowedMethod></CORSRule></CORSConfiguration>")  # no AllowedOrigin
    assert r.status_code == 400 and err_code(r) == "MalformedXML", r.text
    with s3_error("AccessDenied", 403):
        ctx.s3b.get_bucket_cors(Bucket=b)
    ctx.s3a.delete_bucket_cors(Bucket=b)
    with s3_error("NoSuchCORSConfiguration", 404):
        ctx.s3a.get_bucket_cors(Bucket=b)


# --- objects ---------------------------------------------------------------------------------

def test_put_get_head_with_metadata(ctx):
    b = new_bucket(ctx, "obj-meta")
    body = os.urandom(300_000)
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    r = ctx.s3a.put_object(Bucket=b, Key="dir/file.bin", Body=body,
                           Metadata={"Color": "blue", "with-dash": "x y  z"},
                           ContentType="application/x-test", ContentEncoding="identity",
                           ContentDisposition='attachment; filename="f.bin"',
                           CacheControl="max-age=60", ContentLanguage="de", Expires=expires)
    assert r["ETag"] == f'"{md5_hex(body)}"'
    for op in (ctx.s3a.get_object, ctx.s3a.head_object):
        g = op(Bucket=b, Key="dir/file.bin")
        assert g["ETag"] == f'"{md5_hex(body)}"'
        assert g["ContentLength"] == len(body)
        assert g["ContentType"] == "application/x-test"
        assert g["ContentEncoding"] == "identity"
        assert g["ContentDisposition"] == 'attachment; filename="f.bin"'
        assert g["CacheControl"] == "max-age=60"
        assert g["ContentLanguage"] == "de"
        assert g["Metadata"] == {"color": "blue", "with-dash": "x y  z"}
        assert g["AcceptRanges"] == "bytes"
        assert abs((g["LastModified"].replace(tzinfo=None) - utcnow()).total_seconds()) < 600
        assert "VersionId" not in g  # never-versioned bucket
        if op == ctx.s3a.get_object:
            assert g["Body"].read() == body
    # Defaults: no Content-Type -> binary/octet-stream; empty object.
    raw_put = raw("PUT", f"/{b}/empty", ctx.alice, b"")
    assert raw_put.status_code == 200, raw_put.text
    assert raw_put.headers["ETag"] == f'"{md5_hex(b"")}"'
    g = ctx.s3a.get_object(Bucket=b, Key="empty")
    assert g["ContentLength"] == 0 and g["Body"].read() == b""
    assert g["ContentType"] == "binary/octet-stream"
    # Overwrite replaces data and metadata.
    ctx.s3a.put_object(Bucket=b, Key="dir/file.bin", Body=b"short")
    g = ctx.s3a.get_object(Bucket=b, Key="dir/file.bin")
    assert g["Body"].read() == b"short" and g["Metadata"] == {} and "CacheControl" not in g
    with s3_error("NoSuchKey", 404):
        ctx.s3a.get_object(Bucket=b, Key="missing")
    with s3_error("404", 404):
        ctx.s3a.head_object(Bucket=b, Key="missing")
    with s3_error("NoSuchBucket", 404):
        ctx.s3a.get_object(Bucket="no-such-bucket-here", Key="x")
    with s3_error("AccessDenied", 403):
        ctx.s3b.get_object(Bucket=b, Key="empty")
    with s3_error("AccessDenied", 403):
        ctx.s3b.put_object(Bucket=b, Key="bob-was-here", Body=b"x")


def test_special_keys_round_trip(ctx):
    b = new_bucket(ctx, "obj-keys")
    keys = ["a b", "plus+sign", "percent%20", "q?mark", "hash#tag", "amp&eq=", "unicode-ü-漢字",
            "dir//double", "semi;colon", "tilde~star*", "'quote\"", "x" * 1024, "/leading",
            "trailing/", "space at end "]
    for k in keys:
        ctx.s3a.put_object(Bucket=b, Key=k, Body=k.encode())
    for k in keys:
        assert ctx.s3a.get_object(Bucket=b, Key=k)["Body"].read() == k.encode(), k
    listed = []
    for page in ctx.s3a.get_paginator("list_objects_v2").paginate(Bucket=b, PaginationConfig={
            "PageSize": 4}):
        listed += [o["Key"] for o in page.get("Contents", [])]
    assert listed == sorted(keys, key=lambda s: s.encode())
    with s3_error("KeyTooLongError", 400):
        ctx.s3a.put_object(Bucket=b, Key="y" * 1025, Body=b"")


def test_large_single_put_streams_intact(ctx):
    b = new_bucket(ctx, "obj-large")
    body = os.urandom(24 * MiB + 12345)
    r = ctx.s3a.put_object(Bucket=b, Key="big", Body=body)
    assert r["ETag"] == f'"{md5_hex(body)}"'
    got = ctx.s3a.get_object(Bucket=b, Key="big")["Body"].read()
    assert len(got) == len(body) and hashlib.sha256(got).digest() == hashlib.sha256(body).digest()


def test_range_reads(ctx):
    b = new_bucket(ctx, "obj-range")
    body = os.urandom(3 * MiB + 777)  # spans block boundaries (1 MiB blocks)
    n = len(body)
    ctx.s3a.put_object(Bucket=b, Key="r", Body=body)
    cases = {"bytes=0-9": (0, 9), "bytes=10-": (10, n - 1), "bytes=-5": (n - 5, n - 1),
             f"bytes=-{n + 100}": (0, n - 1), f"bytes=100-{n + 5000}": (100, n - 1),
             f"bytes={MiB - 3}-{2 * MiB + 2}": (MiB - 3, 2 * MiB + 2),
             f"bytes={n - 1}-": (n - 1, n - 1), "bytes=0-0": (0, 0)}
    for rng, (a, z) in cases.items():
        g = ctx.s3a.get_object(Bucket=b, Key="r", Range=rng)
        assert g["ResponseMetadata"]["HTTPStatusCode"] == 206, rng
        assert g["ContentRange"] == f"bytes {a}-{z}/{n}", rng
        assert g["ContentLength"] == z - a + 1, rng
        assert g["Body"].read() == body[a:z + 1], rng
    h = ctx.s3a.head_object(Bucket=b, Key="r", Range="bytes=5-14")
    assert h["ContentLength"] == 10 and h["ContentRange"] == f"bytes 5-14/{n}"
    for rng in (f"bytes={n}-", f"bytes={n + 10}-{n + 20}", "bytes=-0"):
        with s3_error("InvalidRange", 416) as ei:
            ctx.s3a.get_object(Bucket=b, Key="r", Range=rng)
        assert ei.value.response["ResponseMetadata"]["HTTPHeaders"]["content-range"] == \
            f"bytes */{n}", rng
    # Ranges S3 ignores (syntactically invalid or multiple): the whole object, 200.
    for rng in ("bytes=9-3", "items=0-5", "bytes=0-1,5-6"):
        g = ctx.s3a.get_object(Bucket=b, Key="r", Range=rng)
        assert g["ResponseMetadata"]["HTTPStatusCode"] == 200, rng
        assert g["ContentLength"] == n, rng
        g["Body"].close()
    ctx.s3a.put_object(Bucket=b, Key="empty", Body=b"")
    with s3_error("InvalidRange", 416):
        ctx.s3a.get_object(Bucket=b, Key="empty", Range="bytes=0-")


def test_conditional_requests(ctx):
    b = new_bucket(ctx, "obj-cond")
    etag = ctx.s3a.put_object(Bucket=b, Key="c", Body=b"conditional")["ETag"]
    mtime = ctx.s3a.head_object(Bucket=b, Key="c")["LastModified"]
    past = mtime - datetime.timedelta(hours=1)
    future = mtime + datetime.timedelta(hours=1)
    g = ctx.s3a.get_object
    assert g(Bucket=b, Key="c", IfMatch=etag)["Body"].read() == b"conditional"
    assert g(Bucket=b, Key="c", IfMatch="*")["ETag"] == etag
    with s3_error("PreconditionFailed", 412):
        g(Bucket=b, Key="c", IfMatch='"0123456789abcdef0123456789abcdef"')
    with s3_error("304", 304) as ei:
        g(Bucket=b, Key="c", IfNoneMatch=etag)
    assert ei.value.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == etag
    assert g(Bucket=b, Key="c", IfNoneMatch='"other"')["ETag"] == etag
    with s3_error("304", 304):
        g(Bucket=b, Key="c", IfModifiedSince=future)
    with s3_error("304", 304):
        g(Bucket=b, Key="c", IfModifiedSince=mtime)  # not modified *since* its own mtime
    assert g(Bucket=b, Key="c", IfModifiedSince=past)["ETag"] == etag
    with s3_error("PreconditionFailed", 412):
        g(Bucket=b, Key="c", IfUnmodifiedSince=past)
    assert g(Bucket=b, Key="c", IfUnmodifiedSince=future)["ETag"] == etag
    # S3's precedence: If-Match true + If-Unmodified-Since false -> 200;
    # If-None-Match false + If-Modified-Since true -> 200.
    assert g(Bucket=b, Key="c", IfMatch=etag, IfUnmodifiedSince=past)["ETag"] == etag
    assert g(Bucket=b, Key="c", IfNoneMatch='"x"', IfModifiedSince=future)["ETag"] == etag
    # HEAD answers the same, without bodies.
    with s3_error("412", 412):
        ctx.s3a.head_object(Bucket=b, Key="c", IfMatch='"nope"')
    with s3_error("304", 304):
        ctx.s3a.head_object(Bucket=b, Key="c", IfNoneMatch=etag)


def test_response_header_overrides(ctx):
    b = new_bucket(ctx, "obj-override")
    ctx.s3a.put_object(Bucket=b, Key="o", Body=b"{}", ContentType="text/plain")
    g = ctx.s3a.get_object(Bucket=b, Key="o", ResponseContentType="application/json",
                           ResponseContentDisposition="inline", ResponseCacheControl="no-store",
                           ResponseContentLanguage="fr", ResponseContentEncoding="identity",
                           ResponseExpires=datetime.datetime(2031, 1, 1))
    assert g["ContentType"] == "application/json"
    assert g["ContentDisposition"] == "inline"
    assert g["CacheControl"] == "no-store"
    assert g["ContentLanguage"] == "fr"
    assert g["ContentEncoding"] == "identity"
    assert g["ResponseMetadata"]["HTTPHeaders"]["expires"].startswith("Wed, 01 Jan 2031")
    assert ctx.s3a.get_object(Bucket=b, Key="o")["ContentType"] == "text/plain"


def test_delete_object_and_delete_objects(ctx):
    b = new_bucket(ctx, "obj-delete")
    for k in ("d1", "d2", "d3", "d4", "d5"):
        ctx.s3a.put_object(Bucket=b, Key=k, Body=k.encode())
    r = ctx.s3a.delete_object(Bucket=b, Key="d1")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with s3_error("NoSuchKey", 404):
        ctx.s3a.get_object(Bucket=b, Key="d1")
    # Deleting what is not there succeeds, as on S3.
    r = ctx.s3a.delete_object(Bucket=b, Key="never-existed")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    r = ctx.s3a.delete_objects(Bucket=b, Delete={"Objects": [
        {"Key": "d2"}, {"Key": "d3"}, {"Key": "not-there"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["d2", "d3", "not-there"]
    assert not r.get("Errors")
    r = ctx.s3a.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "d4"}], "Quiet": True})
    assert not r.get("Deleted") and not r.get("Errors")
    assert [o["Key"] for o in ctx.s3a.list_objects_v2(Bucket=b)["Contents"]] == ["d5"]
    with s3_error("AccessDenied", 403):
        ctx.s3b.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "d5"}]})
    with s3_error("AccessDenied", 403):
        ctx.s3b.delete_object(Bucket=b, Key="d5")
    r = raw("POST", f"/{b}?delete", ctx.alice, b"<Delete><Object><Key>d5</Key>",
            {"Content-MD5": b64(hashlib.md5(b"<Delete><Object><Key>d5</Key>").digest())})
    assert r.status_code == 400 and err_code(r) == "MalformedXML", r.text
    assert ctx.s3a.get_object(Bucket=b, Key="d5")["Body"].read() == b"d5"


def test_copy_object(ctx):
    b = new_bucket(ctx, "obj-copy")
    b2 = new_bucket(ctx, "obj-copy-dst")
    body = os.urandom(2 * MiB + 3)
    ctx.s3a.put_object(Bucket=b, Key="src", Body=body, ContentType="image/png",
                       Metadata={"m": "1"}, CacheControl="max-age=5", Tagging="t=1")
    r = ctx.s3a.copy_object(Bucket=b2, Key="copied", CopySource={"Bucket": b, "Key": "src"})
    assert r["CopyObjectResult"]["ETag"] == f'"{md5_hex(body)}"'
    g = ctx.s3a.get_object(Bucket=b2, Key="copied")
    assert g["Body"].read() == body
    assert g["ContentType"] == "image/png" and g["Metadata"] == {"m": "1"}
    assert g["CacheControl"] == "max-age=5"
    assert ctx.s3a.get_object_tagging(Bucket=b2, Key="copied")["TagSet"] == [
        {"Key": "t", "Value": "1"}]
    r = ctx.s3a.copy_object(Bucket=b, Key="replaced", CopySource=f"{b}/src",
                            MetadataDirective="REPLACE", ContentType="text/x-new",
                            Metadata={"n": "2"}, TaggingDirective="REPLACE", Tagging="u=2")
    g = ctx.s3a.head_object(Bucket=b, Key="replaced")
    assert g["ContentType"] == "text/x-new" and g["Metadata"] == {"n": "2"}
    assert "CacheControl" not in g and g["ETag"] == f'"{md5_hex(body)}"'
    assert ctx.s3a.get_object_tagging(Bucket=b, Key="replaced")["TagSet"] == [
        {"Key": "u", "Value": "2"}]
    # Onto itself: only with REPLACE (metadata change).
    with s3_error("InvalidRequest", 400):
        ctx.s3a.copy_object(Bucket=b, Key="src", CopySource=f"{b}/src")
    ctx.s3a.copy_object(Bucket=b, Key="src", CopySource=f"{b}/src", MetadataDirective="REPLACE",
                        Metadata={"m": "changed"}, ContentType="image/png")
    g = ctx.s3a.get_object(Bucket=b, Key="src")
    assert g["Metadata"] == {"m": "changed"} and g["Body"].read() == body
    # URL-encoded source key.
    ctx.s3a.put_object(Bucket=b, Key="sp ace+plus", Body=b"enc")
    ctx.s3a.copy_object(Bucket=b, Key="enc-copy", CopySource={"Bucket": b, "Key": "sp ace+plus"})
    assert ctx.s3a.get_object(Bucket=b, Key="enc-copy")["Body"].read() == b"enc"
    # Conditional copy, missing sources, and permissions on the source.
    with s3_error("PreconditionFailed", 412):
        ctx.s3a.copy_object(Bucket=b, Key="c2", CopySource=f"{b}/src",
                            CopySourceIfMatch='"00000000000000000000000000000000"')
    with s3_error("NoSuchKey", 404):
        ctx.s3a.copy_object(Bucket=b, Key="c3", CopySource=f"{b}/nothing")
    with s3_error("NoSuchBucket", 404):
        ctx.s3a.copy_object(Bucket=b, Key="c4", CopySource="no-such-bucket-here/x")
    bb = new_bucket(ctx, "obj-copy-bob", ctx.s3b)
    with s3_error("AccessDenied", 403):
        ctx.s3b.copy_object(Bucket=bb, Key="stolen", CopySource=f"{b}/src")


def test_list_objects_v2(ctx):
    b = new_bucket(ctx, "list-v2")
    keys = ["a/1", "a/2", "a/b/3", "a/b/4", "b/1", "c", "d/x/y", "e"]
    for k in keys:
        ctx.s3a.put_object(Bucket=b, Key=k, Body=b"z" * len(k))
    r = ctx.s3a.list_objects_v2(Bucket=b)
    assert [o["Key"] for o in r["Contents"]] == keys and r["KeyCount"] == 8
    assert r["IsTruncated"] is False and r["MaxKeys"] == 1000
    o = r["Contents"][0]
    assert o["Size"] == 3 and o["ETag"] == f'"{md5_hex(b"zzz")}"' and "Owner" not in o
    assert o["StorageClass"] == "STANDARD"
    r = ctx.s3a.list_objects_v2(Bucket=b, Prefix="a/")
    assert [o["Key"] for o in r["Contents"]] == ["a/1", "a/2", "a/b/3", "a/b/4"]
    r = ctx.s3a.list_objects_v2(Bucket=b, Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["c", "e"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "b/", "d/"]
    assert r["KeyCount"] == 5
    r = ctx.s3a.list_objects_v2(Bucket=b, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/b/"]
    r = ctx.s3a.list_objects_v2(Bucket=b, StartAfter="a/b/3")
    assert [o["Key"] for o in r["Contents"]] == keys[3:]
    r = ctx.s3a.list_objects_v2(Bucket=b, FetchOwner=True, MaxKeys=1)
    assert r["Contents"][0]["Owner"]["ID"] == ctx.alice["access_key_id"]
    assert r["IsTruncated"] is True and r["KeyCount"] == 1
    r = ctx.s3a.list_objects_v2(Bucket=b, MaxKeys=0)
    assert r["KeyCount"] == 0 and "Contents" not in r
    # Paging with max-keys and continuation tokens, with and without a delimiter.
    for delim, want in ((None, keys), ("/", ["a/", "b/", "c", "d/", "e"])):
        seen, token, pages = [], None, 0
        while True:
            kw = {"Bucket": b, "MaxKeys": 2}
            if delim:
                kw["Delimiter"] = delim
            if token:
                kw["ContinuationToken"] = token
            r = ctx.s3a.list_objects_v2(**kw)
            pages += 1
            seen += [o["Key"] for o in r.get("Contents", [])]
            seen += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
            assert r["KeyCount"] <= 2
            if not r["IsTruncated"]:
                break
            token = r["NextContinuationToken"]
            assert pages < 20
        assert sorted(seen) == want, (delim, seen)
        assert len(seen) == len(set(seen)), (delim, seen)
    # start-after combined with a prefix and a continuation token (the token wins).
    r = ctx.s3a.list_objects_v2(Bucket=b, Prefix="a/", StartAfter="a/1", MaxKeys=1)
    assert [o["Key"] for o in r["Contents"]] == ["a/2"]
    r = ctx.s3a.list_objects_v2(Bucket=b, Prefix="a/", StartAfter="a/1",
                                ContinuationToken=r["NextContinuationToken"])
    assert [o["Key"] for o in r["Contents"]] == ["a/b/3", "a/b/4"]
    with s3_error("InvalidArgument", 400):
        ctx.s3a.list_objects_v2(Bucket=b, ContinuationToken="garbage!")
    r = raw("GET", f"/{b}?list-type=2&max-keys=-1", ctx.alice)
    assert r.status_code == 400 and err_code(r) == "InvalidArgument"
    with s3_error("AccessDenied", 403):
        ctx.s3b.list_objects_v2(Bucket=b)
    with s3_error("NoSuchBucket", 404):
        ctx.s3a.list_objects_v2(Bucket="no-such-bucket-here")


def test_list_more_than_1000_keys_and_delete_1000(ctx):
    import concurrent.futures as cf
    b = new_bucket(ctx, "list-many")
    keys = [f"k{i:05d}" for i in range(1100)]

    def put(chunk):
        s3 = client(ctx.alice)
        for k in chunk:
            s3.put_object(Bucket=b, Key=k, Body=b"")
    with cf.ThreadPoolExecutor(8) as ex:
        list(ex.map(put, [keys[i::8] for i in range(8)]))
    r = ctx.s3a.list_objects_v2(Bucket=b, MaxKeys=5000)  # capped at 1000
    assert r["KeyCount"] == 1000 and r["IsTruncated"] is True and r["MaxKeys"] == 1000
    r2 = ctx.s3a.list_objects_v2(Bucket=b, ContinuationToken=r["NextContinuationToken"])
    assert [o["Key"] for o in r["Contents"] + r2["Contents"]] == keys and not r2["IsTruncated"]
    with s3_error("MalformedXML", 400):
        ctx.s3a.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k} for k in keys[:1001]]})
    r = ctx.s3a.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k} for k in keys[:1000]]})
    assert len(r["Deleted"]) == 1000
    assert [o["Key"] for o in ctx.s3a.list_objects_v2(Bucket=b)["Contents"]] == keys[1000:]


def test_list_objects_v1(ctx):
    b = new_bucket(ctx, "list-v1")
    keys = [f"k{i:02d}" for i in range(7)] + ["p/1", "p/2", "q/1"]
    for k in keys:
        ctx.s3a.put_object(Bucket=b, Key=k, Body=b"v")
    r = ctx.s3a.list_objects(Bucket=b)
    assert [o["Key"] for o in r["Contents"]] == keys
    assert r["Contents"][0]["Owner"]["ID"] == ctx.alice["access_key_id"]
    assert r["Marker"] == "" and r["IsTruncated"] is False
    r = ctx.s3a.list_objects(Bucket=b, Marker="k04")
    assert [o["Key"] for o in r["Contents"]] == keys[5:]
    # Paging by marker: without a delimiter the client resumes after the last key.
    seen, marker = [], ""
    for _ in range(10):
        r = ctx.s3a.list_objects(Bucket=b, Marker=marker, MaxKeys=3)
        seen += [o["Key"] for o in r.get("Contents", [])]
        if not r["IsTruncated"]:
            break
        marker = r["Contents"][-1]["Key"]
    assert seen == keys
    # With a delimiter, NextMarker is given.
    seen, marker = [], ""
    for _ in range(10):
        r = ctx.s3a.list_objects(Bucket=b, Marker=marker, MaxKeys=4, Delimiter="/")
        seen += [o["Key"] for o in r.get("Contents", [])]
        seen += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if not r["IsTruncated"]:
            break
        marker = r["NextMarker"]
    assert sorted(seen) == keys[:7] + ["p/", "q/"] and len(seen) == len(set(seen))
    pages = list(ctx.s3a.get_paginator("list_objects").paginate(
        Bucket=b, PaginationConfig={"PageSize": 2}))
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == keys


def test_object_tagging(ctx):
    b = new_bucket(ctx, "obj-tags")
    ctx.s3a.put_object(Bucket=b, Key="t", Body=b"x", Tagging="k1=v1&k%202=v%202")
    assert ctx.s3a.get_object_tagging(Bucket=b, Key="t")["TagSet"] == [
        {"Key": "k1", "Value": "v1"}, {"Key": "k 2", "Value": "v 2"}]
    g = ctx.s3a.get_object(Bucket=b, Key="t")
    assert g["TagCount"] == 2
    ctx.s3a.put_object_tagging(Bucket=b, Key="t", Tagging={"TagSet": [
        {"Key": "only", "Value": "one"}]})
    assert ctx.s3a.get_object_tagging(Bucket=b, Key="t")["TagSet"] == [
        {"Key": "only", "Value": "one"}]
    assert ctx.s3a.head_object(Bucket=b, Key="t")["ResponseMetadata"]["HTTPHeaders"][
        "x-amz-tagging-count"] == "1"
    # Tagging leaves the data and the ETag alone.
    g = ctx.s3a.get_object(Bucket=b, Key="t")
    assert g["Body"].read() == b"x" and g["ETag"] == f'"{md5_hex(b"x")}"'
    r = ctx.s3a.delete_object_tagging(Bucket=b, Key="t")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert ctx.s3a.get_object_tagging(Bucket=b, Key="t")["TagSet"] == []
    with s3_error("NoSuchKey", 404):
        ctx.s3a.get_object_tagging(Bucket=b, Key="none")
    with s3_error("NoSuchKey", 404):
        ctx.s3a.put_object_tagging(Bucket=b, Key="none", Tagging={"TagSet": []})
    r = raw("PUT", f"/{b}/t?tagging", ctx.alice, b"<Tagging><TagSet><Tag><Key></Key><Value>v"
            b"</Value></Tag></TagSet></Tagging>")
    assert r.status_code == 400 and err_code(r) == "MalformedXML", r.text
    with s3_error("AccessDenied", 403):
        ctx.s3b.get_object_tagging(Bucket=b, Key="t")
    # S3 allows at most 10 tags on an object.
    eleven = "&".join(f"k{i}=v" for i in range(11))
    r = raw("PUT", f"/{b}/eleven", ctx.alice, b"x", headers={"x-amz-tagging": eleven})
    assert r.status_code == 400, (r.status_code, r.text)


def test_object_subresources_never_touch_the_data(ctx):
    """Object and bucket subresources Gureum does not implement (acl, legal-hold, retention,
    attributes; encryption, publicAccessBlock, ...) must be answered as such (or implemented),
    never routed to PutObject/GetObject/DeleteBucket."""
    b = new_bucket(ctx, "subres")
    precious = b"precious data"
    damaged, misrouted = {}, {}
    calls = {
        "PutObjectAcl": lambda: ctx.s3a.put_object_acl(Bucket=b, Key="k", ACL="private"),
        "PutObjectLegalHold": lambda: ctx.s3a.put_object_legal_hold(
            Bucket=b, Key="k", LegalHold={"Status": "ON"}),
        "PutObjectRetention": lambda: ctx.s3a.put_object_retention(
            Bucket=b, Key="k", Retention={"Mode": "GOVERNANCE",
                                          "RetainUntilDate": datetime.datetime(2030, 1, 1)}),
    }
    for name, call in calls.items():
        ctx.s3a.put_object(Bucket=b, Key="k", Body=precious)
        try:
            call()
        except ClientError:
            pass
        got = ctx.s3a.get_object(Bucket=b, Key="k")["Body"].read()
        if got != precious:
            damaged[name] = got[:80]
    for sub in ("acl", "attributes", "legal-hold", "retention"):
        r = raw("GET", f"/{b}/k?{sub}", ctx.alice,
                headers={"x-amz-object-attributes": "ETag"})
        if r.content == precious:
            misrouted[f"GET ?{sub}"] = "returned the object's bytes"
    for sub in ("encryption", "publicAccessBlock", "ownershipControls", "replication"):
        e = new_bucket(ctx, f"subres-{sub.lower()}")
        r = raw("PUT", f"/{e}?{sub}", ctx.alice, b"<x/>")
        if err_code(r) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            misrouted[f"PUT ?{sub}"] = f"taken for CreateBucket ({err_code(r)})"
        r = raw("DELETE", f"/{e}?{sub}", ctx.alice)
        try:
            ctx.s3a.head_bucket(Bucket=e)
        except ClientError:
            misrouted[f"DELETE ?{sub}"] = f"deleted the bucket ({r.status_code})"
    assert damaged == {} and misrouted == {}, (damaged, misrouted)


def test_conditional_writes(ctx):
    """PutObject with If-None-Match: * / If-Match (S3 since 2024, boto3's IfNoneMatch/IfMatch):
    a failed precondition must not overwrite."""
    b = new_bucket(ctx, "cond-write")
    ctx.s3a.put_object(Bucket=b, Key="lock", Body=b"first")
    ctx.s3a.put_object(Bucket=b, Key="fresh", Body=b"new", IfNoneMatch="*")
    outcomes = {}
    for name, kw in (("If-None-Match: *", {"IfNoneMatch": "*"}),
                     ("If-Match: other", {"IfMatch": '"00000000000000000000000000000000"'})):
        try:
            ctx.s3a.put_object(Bucket=b, Key="lock", Body=b"overwritten", **kw)
            outcomes[name] = "200, overwritten"
        except ClientError as e:
            outcomes[name] = e.response["Error"]["Code"]
    ctx.s3a.put_object(Bucket=b, Key="lock", Body=b"first")
    assert ctx.s3a.put_object(Bucket=b, Key="lock", Body=b"second", IfMatch=ctx.s3a.head_object(
        Bucket=b, Key="lock")["ETag"])["ETag"] == f'"{md5_hex(b"second")}"'
    assert outcomes == {"If-None-Match: *": "PreconditionFailed",
                        "If-Match: other": "PreconditionFailed"}, outcomes


def test_storage_class(ctx):
    b = new_bucket(ctx, "obj-class")
    ctx.s3a.put_object(Bucket=b, Key="rr", Body=b"x", StorageClass="REDUCED_REDUNDANCY")
    ctx.s3a.put_object(Bucket=b, Key="std", Body=b"x")
    assert ctx.s3a.head_object(Bucket=b, Key="rr")["StorageClass"] == "REDUCED_REDUNDANCY"
    assert "StorageClass" not in ctx.s3a.head_object(Bucket=b, Key="std")
    classes = {o["Key"]: o["StorageClass"] for o in ctx.s3a.list_objects_v2(Bucket=b)["Contents"]}
    assert classes == {"rr": "REDUCED_REDUNDANCY", "std": "STANDARD"}
    ctx.s3a.copy_object(Bucket=b, Key="rr-copy", CopySource=f"{b}/std",
                        StorageClass="REDUCED_REDUNDANCY")
    assert ctx.s3a.head_object(Bucket=b, Key="rr-copy")["StorageClass"] == "REDUCED_REDUNDANCY"
    up = ctx.s3a.create_multipart_upload(Bucket=b, Key="rr-mpu", StorageClass="REDUCED_REDUNDANCY")
    assert ctx.s3a.list_multipart_uploads(Bucket=b)["Uploads"][0]["StorageClass"] == \
        "REDUCED_REDUNDANCY"
    p = ctx.s3a.upload_part(Bucket=b, Key="rr-mpu", UploadId=up["UploadId"], PartNumber=1,
                            Body=b"tiny")
    ctx.s3a.complete_multipart_upload(Bucket=b, Key="rr-mpu", UploadId=up["UploadId"],
                                      MultipartUpload={"Parts": [
                                          {"PartNumber": 1, "ETag": p["ETag"]}]})
    assert ctx.s3a.head_object(Bucket=b, Key="rr-mpu")["StorageClass"] == "REDUCED_REDUNDANCY"
    with s3_error("InvalidStorageClass", 400):
        ctx.s3a.put_object(Bucket=b, Key="bad", Body=b"x", StorageClass="NOT_A_CLASS")


# --- multipart -------------------------------------------------------------------------------

def test_multipart_100mib_upload(ctx):
    b = new_bucket(ctx, "mpu-big")
    part = 5 * MiB
    data = os.urandom(100 * MiB)
    t0 = time.monotonic()
    up = ctx.s3a.create_multipart_upload(Bucket=b, Key="big.bin", ContentType="video/x-test",
                                         Metadata={"origin": "test"})["UploadId"]
    parts = []
    for i in range(20):
        chunk = data[i * part:(i + 1) * part]
        r = ctx.s3a.upload_part(Bucket=b, Key="big.bin", UploadId=up, PartNumber=i + 1,
                                Body=chunk)
        assert r["ETag"] == f'"{md5_hex(chunk)}"'
        parts.append({"PartNumber": i + 1, "ETag": r["ETag"]})
    r = ctx.s3a.complete_multipart_upload(Bucket=b, Key="big.bin", UploadId=up,
                                          MultipartUpload={"Parts": parts})
    up_s = time.monotonic() - t0
    want_etag = hashlib.md5(b"".join(bytes.fromhex(p["ETag"].strip('"')) for p in parts))
    assert r["ETag"] == f'"{want_etag.hexdigest()}-20"'
    assert r["Bucket"] == b and r["Key"] == "big.bin"
    h = ctx.s3a.head_object(Bucket=b, Key="big.bin")
    assert h["ContentLength"] == 100 * MiB and h["ETag"] == r["ETag"]
    assert h["ContentType"] == "video/x-test" and h["Metadata"] == {"origin": "test"}
    assert h["ResponseMetadata"]["HTTPHeaders"]["x-amz-mp-parts-count"] == "20"
    t0 = time.monotonic()
    body = ctx.s3a.get_object(Bucket=b, Key="big.bin")["Body"]
    digest, n = hashlib.sha256(), 0
    for piece in iter(lambda: body.read(MiB), b""):
        digest.update(piece)
        n += len(piece)
    down_s = time.monotonic() - t0
    assert n == len(data) and digest.digest() == hashlib.sha256(data).digest()
    print(f"100 MiB: upload {100 / up_s:.0f} MiB/s, download {100 / down_s:.0f} MiB/s")
    g = ctx.s3a.get_object(Bucket=b, Key="big.bin", PartNumber=3)
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert g["ContentRange"] == f"bytes {2 * part}-{3 * part - 1}/{100 * MiB}"
    assert g["Body"].read() == data[2 * part:3 * part]
    lo, hi = 5 * part - 10, 5 * part + 9  # across the boundary of parts 5 and 6
    g = ctx.s3a.get_object(Bucket=b, Key="big.bin", Range=f"bytes={lo}-{hi}")
    assert g["Body"].read() == data[lo:hi + 1]
    with s3_error("InvalidPartNumber", 416):
        ctx.s3a.get_object(Bucket=b, Key="big.bin", PartNumber=21)
    assert not ctx.s3a.list_multipart_uploads(Bucket=b).get("Uploads")


def test_multipart_operations(ctx):
    b = new_bucket(ctx, "mpu-ops")
    src = os.urandom(6 * MiB)
    ctx.s3a.put_object(Bucket=b, Key="source", Body=src)
    up = ctx.s3a.create_multipart_upload(Bucket=b, Key="assembled")["UploadId"]
    up2 = ctx.s3a.create_multipart_upload(Bucket=b, Key="other")["UploadId"]
    ups = ctx.s3a.list_multipart_uploads(Bucket=b)["Uploads"]
    assert sorted((u["Key"], u["UploadId"]) for u in ups) == sorted(
        [("assembled", up), ("other", up2)])
    assert ups[0]["Initiator"]["ID"] == ctx.alice["access_key_id"]
    assert [u["Key"] for u in ctx.s3a.list_multipart_uploads(Bucket=b, Prefix="oth")[
        "Uploads"]] == ["other"]
    tail = os.urandom(1000)
    # Part 1: copied from the source (a range), part 2: the whole source, part 3: uploaded.
    c1 = ctx.s3a.upload_part_copy(Bucket=b, Key="assembled", UploadId=up, PartNumber=1,
                                  CopySource={"Bucket": b, "Key": "source"},
                                  CopySourceRange=f"bytes=0-{5 * MiB}")
    assert c1["CopyPartResult"]["ETag"] == f'"{md5_hex(src[:5 * MiB + 1])}"'
    c2 = ctx.s3a.upload_part_copy(Bucket=b, Key="assembled", UploadId=up, PartNumber=2,
                                  CopySource=f"{b}/source")
    p3 = ctx.s3a.upload_part(Bucket=b, Key="assembled", UploadId=up, PartNumber=3, Body=tail)
    lp = ctx.s3a.list_parts(Bucket=b, Key="assembled", UploadId=up)
    assert [(p["PartNumber"], p["Size"]) for p in lp["Parts"]] == [
        (1, 5 * MiB + 1), (2, 6 * MiB), (3, 1000)]
    assert lp["Parts"][2]["ETag"] == f'"{md5_hex(tail)}"'
    lp = ctx.s3a.list_parts(Bucket=b, Key="assembled", UploadId=up, MaxParts=2)
    assert lp["IsTruncated"] is True and lp["NextPartNumberMarker"] == 2
    lp = ctx.s3a.list_parts(Bucket=b, Key="assembled", UploadId=up, PartNumberMarker=2)
    assert [p["PartNumber"] for p in lp["Parts"]] == [3] and lp["IsTruncated"] is False
    etags = {1: c1["CopyPartResult"]["ETag"], 2: c2["CopyPartResult"]["ETag"], 3: p3["ETag"]}

    def complete(parts, uid=up, key="assembled"):
        return ctx.s3a.complete_multipart_upload(
            Bucket=b, Key=key, UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]})
    with s3_error("InvalidPart", 400):
        complete([(1, etags[1]), (2, '"0123456789abcdef0123456789abcdef"'), (3, etags[3])])
    with s3_error("InvalidPart", 400):
        complete([(1, etags[1]), (4, etags[3])])
    with s3_error("InvalidPartOrder", 400):
        complete([(2, etags[2]), (1, etags[1])])
    # EntityTooSmall: a part other than the last below 5 MiB (part 3 is 1000 bytes).
    small = ctx.s3a.upload_part(Bucket=b, Key="assembled", UploadId=up, PartNumber=4,
                                Body=b"end")
    with s3_error("EntityTooSmall", 400):
        complete([(1, etags[1]), (3, etags[3]), (4, small["ETag"])])
    # Leaving part 4 out is fine: the upload completes with 1, 2, 3.
    r = complete([(1, etags[1]), (2, etags[2]), (3, etags[3])])
    got = ctx.s3a.get_object(Bucket=b, Key="assembled")["Body"].read()
    assert got == src[:5 * MiB + 1] + src + tail
    assert r["ETag"].endswith('-3"')
    with s3_error("NoSuchUpload", 404):
        ctx.s3a.list_parts(Bucket=b, Key="assembled", UploadId=up)
    with s3_error("NoSuchUpload", 404):
        complete([(1, etags[1])])
    # Abort: the upload disappears, its parts too.
    ctx.s3a.upload_part(Bucket=b, Key="other", UploadId=up2, PartNumber=1, Body=b"x" * 100)
    r = ctx.s3a.abort_multipart_upload(Bucket=b, Key="other", UploadId=up2)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert not ctx.s3a.list_multipart_uploads(Bucket=b).get("Uploads")
    with s3_error("NoSuchUpload", 404):
        ctx.s3a.list_parts(Bucket=b, Key="other", UploadId=up2)
    with s3_error("NoSuchUpload", 404):
        ctx.s3a.abort_multipart_upload(Bucket=b, Key="other", UploadId=up2)
    with s3_error("NoSuchUpload", 404):
        ctx.s3a.upload_part(Bucket=b, Key="other", UploadId="bogus-upload-id", PartNumber=1,
                            Body=b"x")
    with s3_error("NoSuchUpload", 404):
        complete([(1, etags[1])], uid="bogus-upload-id")
    # An upload id belongs to its key.
    up3 = ctx.s3a.create_multipart_upload(Bucket=b, Key="k3")["UploadId"]
    with s3_error("NoSuchUpload", 404):
        ctx.s3a.upload_part(Bucket=b, Key="not-k3", UploadId=up3, PartNumber=1, Body=b"x")
    for bad in (0, 10001):
        r = raw("PUT", f"/{b}/k3?partNumber={bad}&uploadId={up3}", ctx.alice, b"x")
        assert r.status_code == 400 and err_code(r) == "InvalidArgument", (bad, r.text)
    r = raw("POST", f"/{b}/k3?uploadId={up3}", ctx.alice, b"<CompleteMultipartUpload/>")
    assert r.status_code == 400 and err_code(r) == "MalformedXML", r.text
    ctx.s3a.abort_multipart_upload(Bucket=b, Key="k3", UploadId=up3)


def test_multipart_upload_by_transfer_manager(ctx):
    """boto3's managed transfer (threads, default CRC32 checksums on every part)."""
    b = new_bucket(ctx, "mpu-managed")
    data = os.urandom(23 * MiB)
    cfg = boto3.s3.transfer.TransferConfig(multipart_threshold=8 * MiB,
                                           multipart_chunksize=8 * MiB, max_concurrency=4)
    ctx.s3a.upload_fileobj(io.BytesIO(data), b, "managed", Config=cfg)
    h = ctx.s3a.head_object(Bucket=b, Key="managed")
    assert h["ContentLength"] == len(data) and h["ETag"].endswith('-3"')
    out = io.BytesIO()
    ctx.s3a.download_fileobj(b, "managed", out, Config=cfg)  # ranged GETs in parallel
    assert out.getvalue() == data


# --- checksums -------------------------------------------------------------------------------

def test_checksums_stored_and_returned(ctx):
    b = new_bucket(ctx, "ck-ok")
    data = os.urandom(200_000)
    expect = {"CRC32": crc32_b64(data), "CRC32C": crc32c_b64(data), "SHA256": sha256_b64(data)}
    for algo, value in expect.items():
        r = ctx.s3a.put_object(Bucket=b, Key=algo, Body=data, **{f"Checksum{algo}": value})
        assert r[f"Checksum{algo}"] == value, algo
        g = ctx.s3a.get_object(Bucket=b, Key=algo, ChecksumMode="ENABLED")
        assert g[f"Checksum{algo}"] == value, algo
        assert g["Body"].read() == data
        h = ctx.s3a.head_object(Bucket=b, Key=algo, ChecksumMode="ENABLED")
        assert h[f"Checksum{algo}"] == value, algo
    # The SDK's own computation (ChecksumAlgorithm), checked on the way back by the SDK.
    r = ctx.s3a.put_object(Bucket=b, Key="sdk-sha256", Body=data, ChecksumAlgorithm="SHA256")
    assert r["ChecksumSHA256"] == expect["SHA256"]
    r = ctx.s3a.put_object(Bucket=b, Key="sdk-default", Body=data)  # newest boto3: CRC32
    assert r["ChecksumCRC32"] == expect["CRC32"]
    g = ctx.s3a.get_object(Bucket=b, Key="sdk-default", ChecksumMode="ENABLED")
    assert g["ChecksumCRC32"] == expect["CRC32"] and g["Body"].read() == data
    lst = {o["Key"]: o.get("ChecksumAlgorithm") for o in
           ctx.s3a.list_objects_v2(Bucket=b)["Contents"]}
    assert lst["CRC32C"] == ["CRC32C"] and lst["SHA256"] == ["SHA256"]
    # Without x-amz-checksum-mode the checksum is not sent (boto3 1.44 always asks for it).
    r = raw("GET", f"/{b}/SHA256", ctx.alice)
    assert r.status_code == 200 and "x-amz-checksum-sha256" not in r.headers
    r = raw("GET", f"/{b}/SHA256", ctx.alice, headers={"x-amz-checksum-mode": "ENABLED"})
    assert r.headers["x-amz-checksum-sha256"] == expect["SHA256"]


def test_wrong_checksums_are_bad_digest(ctx):
    b = new_bucket(ctx, "ck-bad")
    data = b"checksummed payload" * 1000
    wrong = {"CRC32": crc32_b64(b"other"), "CRC32C": crc32c_b64(b"other"),
             "SHA256": sha256_b64(b"other")}
    for algo, value in wrong.items():
        with s3_error("BadDigest", 400):
            ctx.s3a.put_object(Bucket=b, Key=algo, Body=data, **{f"Checksum{algo}": value})
        with s3_error("NoSuchKey", 404):
            ctx.s3a.get_object(Bucket=b, Key=algo)
    with s3_error("BadDigest", 400):
        ctx.s3a.put_object(Bucket=b, Key="md5", Body=data,
                           ContentMD5=b64(hashlib.md5(b"other").digest()))
    with s3_error("NoSuchKey", 404):
        ctx.s3a.get_object(Bucket=b, Key="md5")
    r = ctx.s3a.put_object(Bucket=b, Key="md5", Body=data,
                           ContentMD5=b64(hashlib.md5(data).digest()))
    assert r["ETag"] == f'"{md5_hex(data)}"'
    # A malformed checksum value is refused before any byte is stored.
    with s3_error("InvalidRequest", 400):
        ctx.s3a.put_object(Bucket=b, Key="junk", Body=data, ChecksumCRC32="not base64!")
    # A part with a wrong checksum.
    up = ctx.s3a.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    with s3_error("BadDigest", 400):
        ctx.s3a.upload_part(Bucket=b, Key="mp", UploadId=up, PartNumber=1, Body=data,
                            ChecksumSHA256=wrong["SHA256"])
    with s3_error("BadDigest", 400):
        ctx.s3a.upload_part(Bucket=b, Key="mp", UploadId=up, PartNumber=1, Body=data,
                            ContentMD5=b64(hashlib.md5(b"x").digest()))
    assert not ctx.s3a.list_parts(Bucket=b, Key="mp", UploadId=up).get("Parts")
    ctx.s3a.abort_multipart_upload(Bucket=b, Key="mp", UploadId=up)


@contextmanager
def trailer_checksums():
    """Make botocore send streamed checksums as aws-chunked trailers over http, exactly as it
    does over https by default (STREAMING-UNSIGNED-PAYLOAD-TRAILER)."""
    real = botocore.httpchecksum.urlparse

    def fake(url, *a, **kw):
        return real(url.replace("http://", "https://", 1), *a, **kw)
    with mock.patch("botocore.httpchecksum.urlparse", fake):
        yield


def test_aws_chunked_trailer_uploads_like_boto3_over_https(ctx):
    b = new_bucket(ctx, "ck-trailer")
    data = os.urandom(3 * MiB + 17)
    with trailer_checksums():
        r = ctx.s3a.put_object(Bucket=b, Key="t", Body=data)
        assert r["ChecksumCRC32"] == crc32_b64(data)
        r = ctx.s3a.put_object(Bucket=b, Key="t-sha", Body=data, ChecksumAlgorithm="SHA256")
        assert r["ChecksumSHA256"] == sha256_b64(data)
        # A real Content-Encoding travels next to aws-chunked ("gzip,aws-chunked").
        ctx.s3a.put_object(Bucket=b, Key="gz", Body=b"\x1f\x8bnot really gzip",
                           ContentEncoding="gzip")
        up = ctx.s3a.create_multipart_upload(Bucket=b, Key="mp", ChecksumAlgorithm="CRC32")
        part = ctx.s3a.upload_part(Bucket=b, Key="mp", UploadId=up["UploadId"], PartNumber=1,
                                   Body=data, ChecksumAlgorithm="CRC32")
        assert part["ChecksumCRC32"] == crc32_b64(data)
    g = ctx.s3a.get_object(Bucket=b, Key="t", ChecksumMode="ENABLED")
    assert g["Body"].read() == data and g["ChecksumCRC32"] == crc32_b64(data)
    assert g["ETag"] == f'"{md5_hex(data)}"'
    ctx.s3a.complete_multipart_upload(Bucket=b, Key="mp", UploadId=up["UploadId"],
                                      MultipartUpload={"Parts": [
                                          {"PartNumber": 1, "ETag": part["ETag"],
                                           "ChecksumCRC32": part["ChecksumCRC32"]}]})
    assert ctx.s3a.get_object(Bucket=b, Key="mp")["Body"].read() == data
    # The same framing by hand, sent with a Content-Length (as the Java SDK does): a trailer
    # that does not match the data is BadDigest, a missing final chunk is IncompleteBody.
    for name, trailer, cut, code in (("hand-ok", crc32_b64(data), 0, None),
                                     ("hand-bad", crc32_b64(b"x"), 0, "BadDigest"),
                                     ("hand-short", crc32_b64(data), 60, "IncompleteBody")):
        framed = b"".join(b"%x\r\n" % len(data[i:i + 65536]) + data[i:i + 65536] + b"\r\n"
                          for i in range(0, len(data), 65536))
        framed += b"0\r\nx-amz-checksum-crc32:" + trailer.encode() + b"\r\n\r\n"
        framed = framed[:len(framed) - cut]
        r = raw("PUT", f"/{b}/{name}", ctx.alice, framed, payload="STREAMING-UNSIGNED-PAYLOAD-"
                "TRAILER", headers={"Content-Encoding": "aws-chunked",
                                    "x-amz-trailer": "x-amz-checksum-crc32",
                                    "x-amz-decoded-content-length": str(len(data))})
        if code is None:
            assert r.status_code == 200, r.text
            assert r.headers["x-amz-checksum-crc32"] == crc32_b64(data)
            assert ctx.s3a.get_object(Bucket=b, Key=name)["Body"].read() == data
        else:
            assert r.status_code == 400 and err_code(r) == code, (name, r.text)
            with s3_error("NoSuchKey", 404):
                ctx.s3a.get_object(Bucket=b, Key=name)
    # aws-chunked is a transfer detail: S3 does not store it as the object's Content-Encoding.
    assert "ContentEncoding" not in ctx.s3a.head_object(Bucket=b, Key="t"), \
        ctx.s3a.head_object(Bucket=b, Key="t")["ContentEncoding"]
    assert ctx.s3a.head_object(Bucket=b, Key="gz")["ContentEncoding"] == "gzip"


def _chunked_body(key, url, data, chunk, headers, when, trailer=None, tamper=None):
    """A STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] request, as the Java and Go SDKs send it:
    returns (headers, body)."""
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
    h = {"x-amz-content-sha256": mode, "Content-Encoding": "aws-chunked",
         "x-amz-decoded-content-length": str(len(data)), **headers}
    if trailer:
        h["x-amz-trailer"] = trailer[0]
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    # Length of the framed body, signed as Content-Length.
    sig_len = 64
    framed = sum(len(f"{len(p):x};chunk-signature=") + sig_len + 2 + len(p) + 2 for p in pieces)
    if trailer:
        framed -= 2  # the final chunk's CRLF is replaced by the trailer section
        framed += len(f"{trailer[0]}:{trailer[1]}\r\n") + len("x-amz-trailer-signature:") + \
            64 + 2 + 2
    h["Content-Length"] = str(framed)
    signed = sign(key, "PUT", url, b"", h, when, payload=mode)
    seed = signed["Authorization"].split("Signature=")[1]
    date = signed["X-Amz-Date"]
    scope = f"{date[:8]}/us-east-1/s3/aws4_request"
    kdate = hmac_sha256(("AWS4" + key["secret_access_key"]).encode(), date[:8])
    kregion = hmac_sha256(kdate, "us-east-1")
    kservice = hmac_sha256(kregion, "s3")
    ksign = hmac_sha256(kservice, "aws4_request")
    prev = seed
    out = io.BytesIO()
    empty = hashlib.sha256(b"").hexdigest()
    for i, p in enumerate(pieces):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", date, scope, prev, empty,
                         hashlib.sha256(p).hexdigest()])
        sig = hmac_sha256(ksign, sts).hex()
        if tamper == "sig" and i == 1:
            sig = "0" * 64
        prev = sig
        payload = p if not (tamper == "data" and i == 0) else bytes([p[0] ^ 1]) + p[1:]
        out.write(f"{len(p):x};chunk-signature={sig}\r\n".encode() + payload)
        if p or not trailer:
            out.write(b"\r\n")
    if trailer:
        line = f"{trailer[0]}:{trailer[1]}\n"
        out.write(line.replace("\n", "\r\n").encode())
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", date, scope, prev,
                         hashlib.sha256(line.encode()).hexdigest()])
        out.write(f"x-amz-trailer-signature:{hmac_sha256(ksign, sts).hex()}\r\n\r\n".encode())
    body = out.getvalue()
    assert len(body) == framed, (len(body), framed)
    return signed, body


def hmac_sha256(k, msg):
    import hmac
    return hmac.new(k, msg.encode(), hashlib.sha256).digest()


def test_signed_aws_chunked_payloads(ctx):
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD (each chunk signed, chained), with and without a
    signed checksum trailer; a bad chunk signature or altered data is refused."""
    b = new_bucket(ctx, "ck-signed-chunks")
    data = os.urandom(200_000)
    for trailer in (None, ("x-amz-checksum-crc32", crc32_b64(data))):
        url = f"{S3}/{b}/chunked-{bool(trailer)}"
        # Without a trailer the checksum travels as a header (as the Java SDK v1 does not:
        # a PUT without any checksum is test_put_without_checksum_...).
        extra = {} if trailer else {"x-amz-checksum-crc32": crc32_b64(data)}
        h, body = _chunked_body(ctx.alice, url, data, 65536, extra, None, trailer)
        r = requests.put(url, data=body, headers=h, timeout=5)
        assert r.status_code == 200, r.text
        assert r.headers["ETag"] == f'"{md5_hex(data)}"'
        assert ctx.s3a.get_object(Bucket=b, Key=f"chunked-{bool(trailer)}")["Body"].read() == data
    url = f"{S3}/{b}/bad-trailer"
    h, body = _chunked_body(ctx.alice, url, data, 65536, {}, None,
                            ("x-amz-checksum-crc32", crc32_b64(b"nope")))
    r = requests.put(url, data=body, headers=h, timeout=5)
    assert r.status_code == 400 and err_code(r) == "BadDigest", r.text
    statuses = {}
    for tamper in ("sig", "data"):
        url = f"{S3}/{b}/tampered-{tamper}"
        h, body = _chunked_body(ctx.alice, url, data, 65536,
                                {"x-amz-checksum-crc32": crc32_b64(data)}, None, None, tamper)
        r = requests.put(url, data=body, headers=h, timeout=5)
        assert err_code(r) == "SignatureDoesNotMatch", (tamper, r.text)
        statuses[tamper] = r.status_code
        with s3_error("NoSuchKey", 404):
            ctx.s3a.get_object(Bucket=b, Key=f"tampered-{tamper}")
    # S3 answers SignatureDoesNotMatch with 403 wherever the signature failed.
    assert statuses == {"sig": 403, "data": 403}


# --- versioning ------------------------------------------------------------------------------

def test_versioning_lifecycle(ctx):
    b = new_bucket(ctx, "versions")
    ctx.s3a.put_object(Bucket=b, Key="k", Body=b"before")  # the "null" version
    ctx.s3a.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    v1 = ctx.s3a.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
    v2 = ctx.s3a.put_object(Bucket=b, Key="k", Body=b"two")["VersionId"]
    assert v1 and v2 and v1 != v2 and "null" not in (v1, v2)
    g = ctx.s3a.get_object(Bucket=b, Key="k")
    assert g["Body"].read() == b"two" and g["VersionId"] == v2
    assert ctx.s3a.get_object(Bucket=b, Key="k", VersionId=v1)["Body"].read() == b"one"
    assert ctx.s3a.get_object(Bucket=b, Key="k", VersionId="null")["Body"].read() == b"before"
    h = ctx.s3a.head_object(Bucket=b, Key="k", VersionId=v1)
    assert h["VersionId"] == v1 and h["ContentLength"] == 3
    with s3_error("NoSuchVersion", 404):
        ctx.s3a.get_object(Bucket=b, Key="k", VersionId="no-such-version")
    # Delete without a version: a delete marker on top.
    d = ctx.s3a.delete_object(Bucket=b, Key="k")
    assert d["DeleteMarker"] is True and d["VersionId"]
    marker = d["VersionId"]
    with s3_error("NoSuchKey", 404) as ei:
        ctx.s3a.get_object(Bucket=b, Key="k")
    hh = ei.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert hh["x-amz-delete-marker"] == "true" and hh["x-amz-version-id"] == marker
    with s3_error("405", 405):
        ctx.s3a.head_object(Bucket=b, Key="k", VersionId=marker)
    assert ctx.s3a.get_object(Bucket=b, Key="k", VersionId=v2)["Body"].read() == b"two"
    assert ctx.s3a.list_objects_v2(Bucket=b)["KeyCount"] == 0
    r = ctx.s3a.list_object_versions(Bucket=b)
    vers = [(v["VersionId"], v["IsLatest"], v["Size"]) for v in r["Versions"]]
    assert vers == [(v2, False, 3), (v1, False, 3), ("null", False, 6)]
    assert [(m["VersionId"], m["IsLatest"]) for m in r["DeleteMarkers"]] == [(marker, True)]
    # Removing the marker brings the object back.
    d = ctx.s3a.delete_object(Bucket=b, Key="k", VersionId=marker)
    assert d["DeleteMarker"] is True and d["VersionId"] == marker
    assert ctx.s3a.get_object(Bucket=b, Key="k")["Body"].read() == b"two"
    # Removing the latest version makes the previous one current.
    d = ctx.s3a.delete_object(Bucket=b, Key="k", VersionId=v2)
    assert d["VersionId"] == v2 and "DeleteMarker" not in d
    g = ctx.s3a.get_object(Bucket=b, Key="k")
    assert g["Body"].read() == b"one" and g["VersionId"] == v1
    # DeleteObjects by version, and paging of ListObjectVersions.
    more = [ctx.s3a.put_object(Bucket=b, Key=f"p{i}", Body=b"x")["VersionId"] for i in range(3)]
    r = ctx.s3a.delete_objects(Bucket=b, Delete={"Objects": [
        {"Key": "p0", "VersionId": more[0]}, {"Key": "p1"}]})
    dels = {d["Key"]: d for d in r["Deleted"]}
    assert dels["p0"]["VersionId"] == more[0]
    assert dels["p1"]["DeleteMarker"] is True and dels["p1"]["DeleteMarkerVersionId"]
    seen, km, vm = [], None, None
    for _ in range(20):
        kw = {"Bucket": b, "MaxKeys": 2}
        if km is not None:
            kw.update(KeyMarker=km, VersionIdMarker=vm)
        r = ctx.s3a.list_object_versions(**kw)
        seen += [(v["Key"], v["VersionId"]) for v in r.get("Versions", []) +
                 r.get("DeleteMarkers", [])]
        if not r["IsTruncated"]:
            break
        km, vm = r["NextKeyMarker"], r.get("NextVersionIdMarker", "")
    assert sorted(seen) == sorted([("k", v1), ("k", "null"), ("p1", more[1]),
                                   ("p1", dels["p1"]["DeleteMarkerVersionId"]),
                                   ("p2", more[2])]), seen
    assert len(seen) == len(set(seen))
    r = ctx.s3a.list_object_versions(Bucket=b, Prefix="p")
    assert {v["Key"] for v in r["Versions"]} == {"p1", "p2"}


def test_versioning_suspended_null_version(ctx):
    b = new_bucket(ctx, "versions-susp")
    ctx.s3a.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    v1 = ctx.s3a.put_object(Bucket=b, Key="s", Body=b"kept")["VersionId"]
    ctx.s3a.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    r = ctx.s3a.put_object(Bucket=b, Key="s", Body=b"null-1")
    assert r.get("VersionId") in (None, "null")
    h = ctx.s3a.head_object(Bucket=b, Key="s")
    assert h["VersionId"] == "null"
    ctx.s3a.put_object(Bucket=b, Key="s", Body=b"null-2")  # replaces the null version
    r = ctx.s3a.list_object_versions(Bucket=b)
    assert [(v["VersionId"], v["IsLatest"]) for v in r["Versions"]] == [
        ("null", True), (v1, False)]
    assert ctx.s3a.get_object(Bucket=b, Key="s", VersionId="null")["Body"].read() == b"null-2"
    assert ctx.s3a.get_object(Bucket=b, Key="s", VersionId=v1)["Body"].read() == b"kept"
    # Delete while suspended: a null delete marker replaces the null version.
    d = ctx.s3a.delete_object(Bucket=b, Key="s")
    assert d["DeleteMarker"] is True and d.get("VersionId") == "null"
    r = ctx.s3a.list_object_versions(Bucket=b)
    assert [v["VersionId"] for v in r["Versions"]] == [v1]
    assert [(m["VersionId"], m["IsLatest"]) for m in r["DeleteMarkers"]] == [("null", True)]
    ctx.s3a.delete_object(Bucket=b, Key="s", VersionId="null")
    assert ctx.s3a.get_object(Bucket=b, Key="s")["Body"].read() == b"kept"


# --- website and CORS ------------------------------------------------------------------------

def web_get(bucket_host, path, method="GET", **kw):
    return requests.request(method, WEB + path, headers={"Host": bucket_host, **kw},
                            allow_redirects=False, timeout=10)


def test_static_website(ctx):
    b = new_bucket(ctx, "site", ACL="public-read")
    for k, body, ct in (("index.html", b"<h1>home</h1>", "text/html"),
                        ("error.html", b"<h1>oops</h1>", "text/html"),
                        ("docs/index.html", b"<h1>docs</h1>", "text/html"),
                        ("style.css", b"body{}", "text/css")):
        ctx.s3a.put_object(Bucket=b, Key=k, Body=body, ContentType=ct)
    host = f"{b}.website.localhost"
    r = web_get(host, "/")
    assert r.status_code == 404 and "NoSuchWebsiteConfiguration" in r.text  # not yet a site
    ctx.s3a.put_bucket_website(Bucket=b, WebsiteConfiguration=WEBSITE)
    r = web_get(host, "/")
    assert r.status_code == 200 and r.content == b"<h1>home</h1>"
    assert r.headers["Content-Type"] == "text/html"
    r = web_get(host + ":9080", "/style.css")
    assert r.status_code == 200 and r.content == b"body{}"
    assert r.headers["ETag"] == f'"{md5_hex(b"body{}")}"'
    r = web_get(host, "/docs/")
    assert r.status_code == 200 and r.content == b"<h1>docs</h1>"
    r = web_get(host, "/docs")
    assert r.status_code == 302 and r.headers["Location"] == "/docs/"
    r = web_get(host, "/missing/page.html")
    assert r.status_code == 404 and r.content == b"<h1>oops</h1>"
    assert r.headers["Content-Type"] == "text/html"
    r = web_get(host, "/style.css", method="HEAD")
    assert r.status_code == 200 and r.headers["Content-Length"] == "6"
    r = web_get(host, "/x", method="POST")
    assert r.status_code == 405
    # A bucket named like the host.
    named = new_bucket(ctx, "www.example.test", ACL="public-read")
    ctx.s3a.put_bucket_website(Bucket=named, WebsiteConfiguration={
        "IndexDocument": {"Suffix": "index.html"}})
    ctx.s3a.put_object(Bucket=named, Key="index.html", Body=b"named", ContentType="text/html")
    r = web_get("www.example.test", "/")
    assert r.status_code == 200 and r.content == b"named"
    r = web_get("www.example.test", "/nope")
    assert r.status_code == 404 and "NoSuchKey" in r.text  # no error document: an HTML page
    # Redirect everything.
    red = new_bucket(ctx, "site-redirect")
    ctx.s3a.put_bucket_website(Bucket=red, WebsiteConfiguration={
        "RedirectAllRequestsTo": {"HostName": "example.com", "Protocol": "https"}})
    r = web_get(f"{red}.website.localhost", "/a/b?c=d")
    assert r.status_code == 301 and r.headers["Location"] == "https://example.com/a/b?c=d"
    r = web_get("no-such-site.website.localhost", "/")
    assert r.status_code == 404 and "NoSuchBucket" in r.text


def test_website_config_does_not_open_a_private_bucket_on_the_s3_api(ctx):
    """A website configuration is about the website port; it must not make a private bucket
    anonymously listable and readable through the S3 API (AWS: 403 unless the bucket is made
    public)."""
    b = new_bucket(ctx, "site-private")
    ctx.s3a.put_object(Bucket=b, Key="secret.txt", Body=b"secret")
    ctx.s3a.put_bucket_website(Bucket=b, WebsiteConfiguration=WEBSITE)
    listing = requests.get(f"{S3}/{b}?list-type=2", timeout=10)
    obj = requests.get(f"{S3}/{b}/secret.txt", timeout=10)
    assert (listing.status_code, obj.status_code) == (403, 403), (listing.text[:300], obj.content)


def _rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_stalled_downloads_hold_bounded_memory(ctx):
    """Three clients ask for a 64 MiB object and read nothing: on the S3 port and on the
    website port the node must not buffer the object for them (anonymous website visitors
    could otherwise exhaust its memory)."""
    b = new_bucket(ctx, "site-stall", ACL="public-read")
    ctx.s3a.put_object(Bucket=b, Key="big.bin", Body=os.urandom(64 * MiB))
    ctx.s3a.put_bucket_website(Bucket=b, WebsiteConfiguration=WEBSITE)
    pid = ctx.node.proc.pid
    growth = {}
    for port, path, host in ((9000, f"/{b}/big.bin", f"{IP}:9000"),
                             (9080, "/big.bin", f"{b}.website.localhost")):
        base = _rss_mib(pid)
        socks = []
        try:
            for _ in range(3):
                s = socket.create_connection((IP, port), timeout=5)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                socks.append(s)
            peak, deadline = base, time.monotonic() + 3
            while time.monotonic() < deadline and peak - base < 100:
                peak = max(peak, _rss_mib(pid))
                time.sleep(0.05)
            growth[port] = round(peak - base)
        finally:
            for s in socks:
                s.close()
        wait_for(lambda: node_serves(ctx), 5, "the node to serve after stalled downloads")
    print(f"RSS growth with 3 stalled readers of 64 MiB: {growth} MiB")
    assert growth[9000] < 48 and growth[9080] < 48, growth


def test_cors_preflight_and_simple_requests(ctx):
    b = new_bucket(ctx, "cors-live")
    ctx.s3a.put_object(Bucket=b, Key="o", Body=b"cors")

    def preflight(origin, method, req_headers=None, path=f"/{b}/o"):
        h = {"Origin": origin, "Access-Control-Request-Method": method}
        if req_headers:
            h["Access-Control-Request-Headers"] = req_headers
        return requests.options(S3 + path, headers=h, timeout=10)
    r = preflight("https://app.example.com", "PUT")
    assert r.status_code == 403 and err_code(r) == "CORSResponse"  # CORS not configured
    ctx.s3a.put_bucket_cors(Bucket=b, CORSConfiguration=CORS)
    r = preflight("https://app.example.com", "PUT", "x-amz-date, Content-Type")
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "PUT" in r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Access-Control-Max-Age"] == "600"
    assert "x-amz-date" in r.headers["Access-Control-Allow-Headers"].lower()
    r = preflight("https://anything.example.org", "HEAD", path=f"/{b}")
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] in (
        "*", "https://anything.example.org")
    for origin, method, hdrs in (("https://evil.example.com", "GET", None),
                                 ("https://app.example.com", "DELETE", None),
                                 ("https://app.example.com", "GET", "authorization")):
        r = preflight(origin, method, hdrs)
        assert r.status_code == 403 and err_code(r) == "CORSResponse", (origin, method, hdrs)
        assert "Access-Control-Allow-Origin" not in r.headers
    r = requests.options(S3 + f"/{b}/o", headers={"Origin": "https://app.example.com"},
                         timeout=10)
    assert r.status_code == 400
    # Simple (actual) requests carry the CORS headers of the matching rule.
    h = sign(ctx.alice, "GET", f"{S3}/{b}/o", b"", {"Origin": "https://app.example.com"})
    r = requests.get(f"{S3}/{b}/o", headers=h, timeout=10)
    assert r.status_code == 200 and r.content == b"cors"
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "ETag" in r.headers.get("Access-Control-Expose-Headers", "")
    h = sign(ctx.alice, "GET", f"{S3}/{b}/o", b"", {"Origin": "https://evil.example.com"})
    r = requests.get(f"{S3}/{b}/o", headers=h, timeout=10)
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers


# --- access control --------------------------------------------------------------------------

def test_anonymous_access_private_and_public_read(ctx):
    priv = new_bucket(ctx, "acl-private")
    ctx.s3a.put_object(Bucket=priv, Key="secret", Body=b"s")
    r = requests.get(f"{S3}/{priv}/secret", timeout=10)
    assert r.status_code == 403 and err_code(r) == "AccessDenied"
    r = requests.get(f"{S3}/{priv}", timeout=10)
    assert r.status_code == 403 and err_code(r) == "AccessDenied"
    r = requests.head(f"{S3}/{priv}/secret", timeout=10)
    assert r.status_code == 403 and not r.content
    pub = new_bucket(ctx, "acl-public", ACL="public-read")
    ctx.s3a.put_object(Bucket=pub, Key="open", Body=b"o")
    r = requests.get(f"{S3}/{pub}/open", timeout=10)
    assert r.status_code == 200 and r.content == b"o"
    assert ctx.anon.list_objects_v2(Bucket=pub)["Contents"][0]["Key"] == "open"
    r = requests.put(f"{S3}/{pub}/anon-write", data=b"w", timeout=10)
    assert r.status_code == 403 and err_code(r) == "AccessDenied"
    r = requests.delete(f"{S3}/{pub}/open", timeout=10)
    assert r.status_code == 403
    # PutBucketAcl opens the private bucket, and closes it again.
    ctx.s3a.put_bucket_acl(Bucket=priv, ACL="public-read")
    r = requests.get(f"{S3}/{priv}/secret", timeout=10)
    assert r.status_code == 200 and r.content == b"s"
    grants = ctx.s3a.get_bucket_acl(Bucket=priv)["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
            "Permission": "READ"} in grants
    with s3_error("AccessDenied", 403):
        ctx.s3b.put_bucket_acl(Bucket=priv, ACL="private")
    ctx.s3a.put_bucket_acl(Bucket=priv, ACL="private")
    r = requests.get(f"{S3}/{priv}/secret", timeout=10)
    assert r.status_code == 403
    # Another key may read a public bucket but not write to it.
    assert ctx.s3b.get_object(Bucket=pub, Key="open")["Body"].read() == b"o"
    with s3_error("AccessDenied", 403):
        ctx.s3b.put_object(Bucket=pub, Key="bob", Body=b"b")
    r = raw("PUT", "/acl-bogus", ctx.alice, headers={"x-amz-acl": "wide-open"})
    assert r.status_code == 400 and err_code(r) == "InvalidArgument", r.text


def test_bucket_grants_from_cli(ctx):
    b = new_bucket(ctx, "grants")
    ctx.s3a.put_object(Bucket=b, Key="g", Body=b"granted")
    carol = ctx.carol["access_key_id"]
    with s3_error("AccessDenied", 403):
        ctx.s3c.get_object(Bucket=b, Key="g")
    r = ctx.node.cli("bucket", "allow", carol, b, "read")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: ctx.s3c.get_object(Bucket=b, Key="g")["Body"].read() == b"granted", 5,
             "the read grant to take effect")
    assert [o["Key"] for o in ctx.s3c.list_objects_v2(Bucket=b)["Contents"]] == ["g"]
    with s3_error("AccessDenied", 403):
        ctx.s3c.put_object(Bucket=b, Key="c", Body=b"c")
    assert ctx.node.cli("bucket", "allow", carol, b, "write").returncode == 0
    wait_for(lambda: ctx.s3c.put_object(Bucket=b, Key="c", Body=b"c"), 5, "the write grant")
    ctx.s3c.delete_object(Bucket=b, Key="c")
    with s3_error("AccessDenied", 403):  # configuration needs owner
        ctx.s3c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    with s3_error("AccessDenied", 403):
        ctx.s3c.delete_bucket(Bucket=b)
    assert ctx.node.cli("bucket", "allow", carol, b, "owner").returncode == 0
    wait_for(lambda: ctx.s3c.get_bucket_versioning(Bucket=b), 5, "the owner grant")
    assert b in [x["Name"] for x in ctx.s3c.list_buckets()["Buckets"]]
    r = json.loads(ctx.node.cli("key", "list", "--json").stdout)
    mine = [k for k in r if k["access_key_id"] == carol][0]
    assert mine["grants"] == {b: "owner"} and mine["can_create_buckets"] is False
    r = ctx.node.cli("bucket", "allow", carol, b, "sudo")
    assert r.returncode != 0 and "read, write or owner" in r.stderr, r.stderr
    r = ctx.node.cli("bucket", "allow", "GKNOSUCHKEY000000000", b, "read")
    assert r.returncode != 0 and "GKNOSUCHKEY000000000" in r.stderr, (r.returncode, r.stderr)


def test_key_delete_revokes_access(ctx):
    k = create_key(ctx.node, "short-lived")
    s3 = client(k)
    s3.create_bucket(Bucket="short-lived-bucket")
    assert k["access_key_id"] in ctx.node.cli("key", "list").stdout
    r = ctx.node.cli("key", "delete", k["access_key_id"])
    assert r.returncode == 0, r.stderr
    assert k["access_key_id"] not in ctx.node.cli("key", "list").stdout

    def refused():
        try:
            s3.list_buckets()
        except ClientError as e:
            return e.response["Error"]["Code"] == "InvalidAccessKeyId"
        return False
    wait_for(refused, 5, "the deleted key to be refused")


def test_wrong_secret_and_unknown_key(ctx):
    bad = client({"access_key_id": ctx.alice["access_key_id"],
                  "secret_access_key": ctx.alice["secret_access_key"][:-1] + "x"})
    with s3_error("SignatureDoesNotMatch", 403):
        bad.list_objects_v2(Bucket=ctx.home)
    with s3_error("SignatureDoesNotMatch", 403):
        bad.put_object(Bucket=ctx.home, Key="never", Body=b"x" * 100_000)
    with s3_error("NoSuchKey", 404):
        ctx.s3a.get_object(Bucket=ctx.home, Key="never")
    unknown = client({"access_key_id": "GKUNKNOWNUNKNOWN0000", "secret_access_key": "x" * 40})
    with s3_error("InvalidAccessKeyId", 403):
        unknown.list_buckets()
    # Signed for another request: a modified header that was signed.
    h = sign(ctx.alice, "GET", f"{S3}/{ctx.home}", b"", {"x-amz-meta-a": "1"})
    h["x-amz-meta-a"] = "2"
    r = requests.get(f"{S3}/{ctx.home}", headers=h, timeout=10)
    assert r.status_code == 403 and err_code(r) == "SignatureDoesNotMatch"
    r = requests.get(f"{S3}/{ctx.home}?prefix=x", headers=sign(
        ctx.alice, "GET", f"{S3}/{ctx.home}", b""), timeout=10)
    assert r.status_code == 403 and err_code(r) == "SignatureDoesNotMatch"
    r = requests.get(f"{S3}/{ctx.home}", headers={"Authorization": "AWS AKID:c2lnbmF0dXJl"},
                     timeout=10)  # SigV2
    assert r.status_code in (400, 403) and err_code(r) == "InvalidRequest", r.text


def test_tampered_payload_is_refused(ctx):
    b = ctx.home
    signed_body, sent_body = b"A" * 5000, b"B" * 5000
    r = raw("PUT", f"/{b}/tampered", ctx.alice, signed_body, sent_body=sent_body)
    assert r.status_code == 400 and err_code(r) == "XAmzContentSHA256Mismatch", r.text
    with s3_error("NoSuchKey", 404):
        ctx.s3a.get_object(Bucket=b, Key="tampered")
    # A large streamed one (the mismatch is only known at the end).
    big_signed = os.urandom(5 * MiB)
    big_sent = big_signed[:-1] + bytes([big_signed[-1] ^ 0xFF])
    r = raw("PUT", f"/{b}/tampered-big", ctx.alice, big_signed, sent_body=big_sent)
    assert r.status_code == 400 and err_code(r) == "XAmzContentSHA256Mismatch", r.text
    with s3_error("NoSuchKey", 404):
        ctx.s3a.get_object(Bucket=b, Key="tampered-big")
    # A buffered request (tagging XML).
    xml = b"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>"
    ctx.s3a.put_object(Bucket=b, Key="tag-me", Body=b"x")
    r = raw("PUT", f"/{b}/tag-me?tagging", ctx.alice, xml, sent_body=xml.replace(b"1", b"2"))
    assert r.status_code == 400 and err_code(r) == "XAmzContentSHA256Mismatch", r.text
    assert ctx.s3a.get_object_tagging(Bucket=b, Key="tag-me")["TagSet"] == []
    # UNSIGNED-PAYLOAD is honoured as such.
    r = raw("PUT", f"/{b}/unsigned", ctx.alice, b"u" * 10, payload="UNSIGNED-PAYLOAD",
            sent_body=b"v" * 10)
    assert r.status_code == 200, r.text
    assert ctx.s3a.get_object(Bucket=b, Key="unsigned")["Body"].read() == b"v" * 10


def test_presigned_urls(ctx):
    b = new_bucket(ctx, "presign")
    ctx.s3a.put_object(Bucket=b, Key="file name.txt", Body=b"presigned content")
    url = ctx.s3a.generate_presigned_url("get_object", Params={"Bucket": b,
                                         "Key": "file name.txt"}, ExpiresIn=300)
    out = subprocess.run(["curl", "-sS", "-m", "10", "-w", "\n%{http_code}", url],
                         capture_output=True, timeout=20)
    body, _, status = out.stdout.rpartition(b"\n")
    assert status == b"200" and body == b"presigned content", out
    url2 = ctx.s3a.generate_presigned_url("get_object", Params={
        "Bucket": b, "Key": "file name.txt", "ResponseContentType": "text/x-presigned"},
        ExpiresIn=300)
    r = requests.get(url2, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/x-presigned"
    # Presigned PUT.
    put = ctx.s3a.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "up"},
                                         ExpiresIn=300)
    out = subprocess.run(["curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
                          "-X", "PUT", "-H", f"x-amz-checksum-crc32: {crc32_b64(b'via curl')}",
                          "--data-binary", "via curl", put], capture_output=True, timeout=20)
    assert out.stdout == b"200", out
    assert ctx.s3a.get_object(Bucket=b, Key="up")["Body"].read() == b"via curl"
    # Expired: signed two hours ago, valid for 60 s.
    with mock.patch("botocore.auth.get_current_datetime",
                    return_value=utcnow() - datetime.timedelta(hours=2)):
        old = ctx.s3a.generate_presigned_url("get_object", Params={"Bucket": b,
                                             "Key": "file name.txt"}, ExpiresIn=60)
    out = subprocess.run(["curl", "-sS", "-m", "10", "-w", "\n%{http_code}", old],
                         capture_output=True, timeout=20)
    body, _, status = out.stdout.rpartition(b"\n")
    assert status == b"403" and b"<Code>AccessDenied</Code>" in body, out
    # Tampered: another key under the same signature.
    r = requests.get(url.replace("file%20name.txt", "up"), timeout=10)
    assert r.status_code == 403 and err_code(r) == "SignatureDoesNotMatch"
    # Expiry longer than a week.
    r = requests.get(url.replace("X-Amz-Expires=300", "X-Amz-Expires=604801"), timeout=10)
    assert r.status_code in (400, 403) and err_code(r) == "AuthorizationQueryParametersError"


def test_clock_skew_is_refused(ctx):
    for minutes in (-20, 20):
        when = utcnow() + datetime.timedelta(minutes=minutes)
        r = raw("GET", f"/{ctx.home}", ctx.alice, when=when)
        assert r.status_code == 403 and err_code(r) == "RequestTimeTooSkewed", (minutes, r.text)
    for minutes in (-10, 10):  # inside the 15 minutes S3 allows
        when = utcnow() + datetime.timedelta(minutes=minutes)
        r = raw("GET", f"/{ctx.home}", ctx.alice, when=when)
        assert r.status_code == 200, (minutes, r.text)
    with mock.patch("botocore.auth.get_current_datetime",
                    return_value=utcnow() - datetime.timedelta(minutes=16)):
        with s3_error("RequestTimeTooSkewed", 403):
            ctx.s3a.put_object(Bucket=ctx.home, Key="skewed", Body=b"x")


def test_virtual_hosted_style(ctx):
    b = new_bucket(ctx, "vhost")
    host = f"{b}.s3.localhost:9000"
    r = raw("PUT", "/dir/obj.txt", ctx.alice, b"virtual", host=host)
    assert r.status_code == 200, r.text
    assert ctx.s3a.get_object(Bucket=b, Key="dir/obj.txt")["Body"].read() == b"virtual"
    r = raw("GET", "/dir/obj.txt", ctx.alice, host=host)
    assert r.status_code == 200 and r.content == b"virtual"
    r = raw("GET", "/?list-type=2", ctx.alice, host=host)
    assert r.status_code == 200 and "<Key>dir/obj.txt</Key>" in r.text
    r = raw("GET", "/dir/obj.txt", ctx.alice, host=f"{b.upper()}.S3.LOCALHOST")
    assert r.status_code == 200 and r.content == b"virtual"
    # Host is signed: the same signature does not work for another bucket.
    other = new_bucket(ctx, "vhost-other")
    ctx.s3a.put_object(Bucket=other, Key="dir/obj.txt", Body=b"other")
    h = sign(ctx.alice, "GET", f"{S3}/dir/obj.txt", b"", {"Host": host})
    h["Host"] = f"{other}.s3.localhost:9000"
    r = requests.get(f"{S3}/dir/obj.txt", headers=h, timeout=10)
    assert r.status_code == 403 and err_code(r) == "SignatureDoesNotMatch"


# --- robustness ------------------------------------------------------------------------------

def _send_raw(data, read=True, timeout=3):
    """Send bytes on a fresh connection; return what came back before close/timeout."""
    s = socket.create_connection((IP, 9000), timeout=timeout)
    got = b""
    try:
        for piece in data if isinstance(data, list) else [data]:
            s.sendall(piece)
        if read:
            s.shutdown(socket.SHUT_WR)
            while True:
                try:
                    d = s.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    break
                if not d:
                    break
                got += d
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        s.close()
    return got


def _head_bytes(method, path, headers, extra=""):
    """A request head with the given (signed) headers and our Host."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {IP}:9000"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def test_garbage_never_crashes_the_node(ctx):
    rnd = random.Random(1234)
    auth = sign(ctx.alice, "PUT", f"{S3}/{ctx.home}/chunky", b"",
                {"Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
                 "x-amz-decoded-content-length": "10"},
                payload="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    auth.pop("Content-Length", None)
    chunky_head = _head_bytes("PUT", f"/{ctx.home}/chunky", auth,
                              "Transfer-Encoding: chunked\r\n")
    cases = {
        "random bytes": bytes(rnd.getrandbits(8) for _ in range(65536)),
        "random printable": "".join(rnd.choice("GET /\r\n: abc") for _ in range(20000)).encode(),
        "huge header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n",
        "many headers": b"GET / HTTP/1.1\r\n" + b"".join(
            b"X-H%d: v\r\n" % i for i in range(20000)) + b"\r\n",
        "huge url": b"GET /" + b"k" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "long key": b"GET /" + ctx.home.encode() + b"/" + b"k" * 9000 + b" HTTP/1.1\r\n\r\n",
        "truncated body": b"PUT /" + ctx.home.encode() + b"/t HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 100000\r\n\r\nonly a little",
        "truncated headers": b"GET /" + ctx.home.encode() + b" HTTP/1.1\r\nHost: x\r\nX-A",
        "negative length": b"PUT /a/b HTTP/1.1\r\nContent-Length: -5\r\n\r\nhello",
        "overflow length": b"PUT /a/b HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "both lengths": b"POST /a?delete HTTP/1.1\r\nContent-Length: 5\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "bad chunk size": b"PUT /a/b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n",
        "huge chunk size": b"PUT /a/b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"ffffffffffffffffff\r\nabc",
        "nul bytes": b"GET /\x00\x00 HTTP/1.1\r\nHost: \x00\r\n\r\n",
        "http/0.9": b"GET /\r\n\r\n",
        "bad version": b"GET / HTTP/9.9\r\n\r\n",
        "bare lf": b"GET / HTTP/1.1\nHost: x\n\n",
        "pipelined": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 200,
        "expect 100": b"PUT /" + ctx.home.encode() + b"/e HTTP/1.1\r\nHost: x\r\n"
                      b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n",
        "bad authorization": b"GET /" + ctx.home.encode() + b" HTTP/1.1\r\nAuthorization: "
                             b"AWS4-HMAC-SHA256 Credential=/,,,=,SignedHeaders=;;;\r\n\r\n",
        "authorization junk": b"GET / HTTP/1.1\r\nAuthorization: AWS4-HMAC-SHA256 " +
                              b"=" * 5000 + b"\r\nx-amz-date: 99999999T999999Z\r\n\r\n",
        "presign junk": b"GET /a/b?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%%%"
                        b"&X-Amz-Date=1&X-Amz-Expires=-9&X-Amz-SignedHeaders=&X-Amz-Signature="
                        b" HTTP/1.1\r\n\r\n",
        "bad aws-chunked": [chunky_head, b"5\r\nhello\r\n", b"zz;chunk-signature=\r\n\r\n"],
        "aws-chunked overrun": [chunky_head, b"a\r\n0123456789\r\n", b"20\r\n" + b"x" * 32 +
                                b"\r\n0\r\n\r\n"],
        "aws-chunked long trailer": [chunky_head, b"a\r\n0123456789\r\n0\r\n" +
                                     b"x-amz-checksum-crc32:" + b"A" * 5000 + b"\r\n\r\n"],
        "website garbage": None,
    }
    for name, data in cases.items():
        if name == "website garbage":
            s = socket.create_connection((IP, 9080), timeout=3)
            s.sendall(b"GET /" + b"\xff" * 10000 + b" HTTP/1.1\r\nHost: " + b"." * 3000 +
                      b"\r\n\r\n")
            s.close()
        else:
            got = _send_raw(data)
            if got:
                assert got.startswith(b"HTTP/1."), (name, got[:200])
                status = int(got.split(b" ", 2)[1])
                assert status < 500 or status == 503, (name, got[:300])
        wait_for(lambda: node_serves(ctx), 5, f"the node to serve after {name!r}")
    # Half-open connections, opened and dropped at once, many of them.
    socks = [socket.create_connection((IP, 9000), timeout=3) for _ in range(300)]
    for i, s in enumerate(socks):
        if i % 2:
            s.sendall(b"GET / HTTP/1.1\r\nHost:")
        s.close()
    wait_for(lambda: node_serves(ctx), 5, "the node to serve after 300 dropped connections")
    # A client that disappears mid-download.
    ctx.s3a.put_object(Bucket=ctx.home, Key="dl", Body=os.urandom(8 * MiB))
    h = sign(ctx.alice, "GET", f"{S3}/{ctx.home}/dl")
    s = socket.create_connection((IP, 9000), timeout=3)
    s.sendall(_head_bytes("GET", f"/{ctx.home}/dl", h))
    s.recv(1000)
    s.close()
    # A client that disappears mid-upload (streamed body).
    h = sign(ctx.alice, "PUT", f"{S3}/{ctx.home}/ul", b"", {"Content-Length": str(50 * MiB)},
             payload="UNSIGNED-PAYLOAD")
    s = socket.create_connection((IP, 9000), timeout=3)
    s.sendall(_head_bytes("PUT", f"/{ctx.home}/ul", h))
    s.sendall(os.urandom(3 * MiB))
    s.close()
    wait_for(lambda: node_serves(ctx), 5, "the node to serve after abandoned transfers")
    with s3_error("NoSuchKey", 404):
        ctx.s3a.get_object(Bucket=ctx.home, Key="ul")
    assert ctx.s3a.get_object(Bucket=ctx.home, Key="dl")["ContentLength"] == 8 * MiB
    assert "level=fatal" not in ctx.node.log_text()


def test_concurrent_clients(ctx):
    """16 threads, each with its own client, put and read back distinct objects."""
    import concurrent.futures as cf
    b = new_bucket(ctx, "concurrent")
    blobs = {f"o{i}": os.urandom(random.randint(1, 3 * MiB)) for i in range(48)}

    def work(item):
        k, data = item
        s3 = client(ctx.alice)
        s3.put_object(Bucket=b, Key=k, Body=data)
        return k, s3.get_object(Bucket=b, Key=k)["Body"].read() == data
    with cf.ThreadPoolExecutor(16) as ex:
        results = dict(ex.map(work, blobs.items()))
    assert all(results.values()), [k for k, ok in results.items() if not ok]
    assert ctx.s3a.list_objects_v2(Bucket=b)["KeyCount"] == 48


# --- other clients ---------------------------------------------------------------------------

def aws_env(ctx, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ctx.alice["access_key_id"],
               AWS_SECRET_ACCESS_KEY=ctx.alice["secret_access_key"],
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"),
               AWS_PAGER="", AWS_MAX_ATTEMPTS="1", HOME=str(tmp_path))
    return env


@pytest.mark.skipif(not AWS_CLI, reason="aws CLI not installed (deploy/install-deps.sh)")
def test_aws_cli(ctx, tmp_path):
    env = aws_env(ctx, tmp_path)

    def aws(*args, check=True):
        r = subprocess.run([AWS_CLI, "--endpoint-url", S3, "--cli-read-timeout", "5",
                            "--cli-connect-timeout", "5", *args], capture_output=True,
                           text=True, env=env, timeout=120)
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r
    b = "cli-bucket"
    aws("s3", "mb", f"s3://{b}")
    assert b in aws("s3", "ls").stdout
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello from the aws cli\n")
    big = tmp_path / "big.bin"
    big_data = os.urandom(20 * MiB)
    big.write_bytes(big_data)
    aws("s3", "cp", str(small), f"s3://{b}/dir/small.txt")
    aws("s3", "cp", str(big), f"s3://{b}/dir/big.bin")  # multipart (8 MiB parts)
    h = ctx.s3a.head_object(Bucket=b, Key="dir/big.bin")
    assert h["ContentLength"] == 20 * MiB and h["ETag"].endswith('-3"'), h["ETag"]
    out = aws("s3", "ls", f"s3://{b}/dir/").stdout
    assert "small.txt" in out and "big.bin" in out and str(20 * MiB) in out
    assert "PRE dir/" in aws("s3", "ls", f"s3://{b}").stdout
    down = tmp_path / "down.bin"
    aws("s3", "cp", f"s3://{b}/dir/big.bin", str(down))
    assert hashlib.sha256(down.read_bytes()).digest() == hashlib.sha256(big_data).digest()
    # sync up, change a file, sync again, sync down.
    src = tmp_path / "site"
    (src / "sub").mkdir(parents=True)
    for name, content in (("a.txt", "a"), ("b.txt", "b"), ("sub/c.txt", "c")):
        (src / name).write_text(content)
    aws("s3", "sync", str(src), f"s3://{b}/site")
    (src / "a.txt").write_text("a, changed")
    (src / "b.txt").unlink()
    r = aws("s3", "sync", "--delete", str(src), f"s3://{b}/site")
    assert "a.txt" in r.stdout and "delete: s3://cli-bucket/site/b.txt" in r.stdout, r.stdout
    keys = sorted(o["Key"] for o in ctx.s3a.list_objects_v2(Bucket=b, Prefix="site/")["Contents"])
    assert keys == ["site/a.txt", "site/sub/c.txt"]
    r = aws("s3", "sync", str(src), f"s3://{b}/site")  # nothing to do
    assert r.stdout.strip() == ""
    dst = tmp_path / "back"
    aws("s3", "sync", f"s3://{b}/site", str(dst))
    assert (dst / "a.txt").read_text() == "a, changed" and (dst / "sub/c.txt").read_text() == "c"
    # s3api.
    r = json.loads(aws("s3api", "head-object", "--bucket", b, "--key", "dir/small.txt").stdout)
    assert r["ContentLength"] == small.stat().st_size
    r = json.loads(aws("s3api", "list-objects-v2", "--bucket", b, "--prefix", "dir/").stdout)
    assert [o["Key"] for o in r["Contents"]] == ["dir/big.bin", "dir/small.txt"]
    aws("s3api", "put-bucket-versioning", "--bucket", b, "--versioning-configuration",
        "Status=Enabled")
    r = json.loads(aws("s3api", "get-bucket-versioning", "--bucket", b).stdout)
    assert r["Status"] == "Enabled"
    # rm, recursively, then the bucket (versions remain: not empty).
    aws("s3", "rm", f"s3://{b}/dir/small.txt")
    r = aws("s3", "rm", "--recursive", f"s3://{b}")
    assert r.stdout.count("delete:") == 3, r.stdout
    assert aws("s3", "ls", "--recursive", f"s3://{b}").stdout.strip() == ""
    r = aws("s3", "rb", f"s3://{b}", check=False)
    assert r.returncode != 0 and "BucketNotEmpty" in r.stderr
    # Every key's latest version is a delete marker: no "folder" is left to list either.
    assert aws("s3", "ls", f"s3://{b}").stdout.strip() == ""


@pytest.mark.skipif(not os.path.exists(DEBIAN_PY) or subprocess.run(
    [DEBIAN_PY, "-c", "import boto3"], capture_output=True).returncode != 0,
    reason="Debian's python3-boto3 is not installed (deploy/install-deps.sh)")
def test_debian_boto3_round_trip(ctx):
    script = r"""
import json, os, sys, boto3, botocore
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                read_timeout=5, retries={"total_max_attempts": 1}))
out = {"version": boto3.__version__}
s3.create_bucket(Bucket="debian-boto3")
data = os.urandom(1 << 20)
out["put_etag"] = s3.put_object(Bucket="debian-boto3", Key="k/one", Body=data,
                                Metadata={"a": "b"})["ETag"]
g = s3.get_object(Bucket="debian-boto3", Key="k/one")
out["get_ok"] = g["Body"].read() == data
out["meta"] = g["Metadata"]
out["list"] = [o["Key"] for o in s3.list_objects_v2(Bucket="debian-boto3")["Contents"]]
from boto3.s3.transfer import TransferConfig
import io
big = os.urandom(12 << 20)
s3.upload_fileobj(io.BytesIO(big), "debian-boto3", "k/big",
                  Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
buf = io.BytesIO()
s3.download_fileobj("debian-boto3", "k/big", buf)
out["big_ok"] = buf.getvalue() == big
s3.delete_objects(Bucket="debian-boto3", Delete={"Objects": [{"Key": "k/one"}, {"Key": "k/big"}]})
s3.delete_bucket(Bucket="debian-boto3")
out["etag_md5"] = __import__("hashlib").md5(data).hexdigest()
print(json.dumps(out))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ctx.alice["access_key_id"],
               AWS_SECRET_ACCESS_KEY=ctx.alice["secret_access_key"],
               AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    r = subprocess.run([DEBIAN_PY, "-c", script, S3], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["version"].startswith("1.26"), out
    assert out["put_etag"] == f'"{out["etag_md5"]}"'
    assert out["get_ok"] and out["big_ok"] and out["meta"] == {"a": "b"}
    assert out["list"] == ["k/one"]


def test_versioned_deletes_leave_no_common_prefixes(ctx):
    b = new_bucket(ctx, "ver-prefixes")
    ctx.s3a.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    for k in ("gone/x", "gone/y", "kept/z", "top"):
        ctx.s3a.put_object(Bucket=b, Key=k, Body=b"v")
    for k in ("gone/x", "gone/y", "top"):
        ctx.s3a.delete_object(Bucket=b, Key=k)
    r = ctx.s3a.list_objects_v2(Bucket=b, Delimiter="/")
    assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["kept/"], r
    assert "Contents" not in r and r["KeyCount"] == 1
    r = ctx.s3a.list_objects(Bucket=b, Delimiter="/")
    assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["kept/"], r


def test_put_without_checksum_is_answered_and_node_stops_cleanly(workdir, nodes):
    """The plainest signed PUT (no x-amz-checksum-*, no Expect), as curl, the aws CLI 2.9 and
    older SDKs send it, is answered; and the node stops cleanly afterwards."""
    ip = "127.0.50.3"
    n = Node(workdir, "s3plain", ip)
    nodes.append(n)
    start_own(n)
    key = create_key(n, "plain")
    s3 = client(key, endpoint=f"http://{ip}:9000")
    wait_for(lambda: s3.create_bucket(Bucket="plain"), 10, "bucket creation")
    answers = {}
    for name, body in (("empty", b""), ("small", b"hello"), ("big", os.urandom(2 * MiB))):
        try:
            r = raw("PUT", f"/plain/{name}", key, body, base=f"http://{ip}:9000", timeout=3,
                    checksum=False)
            answers[name] = r.status_code
        except requests.exceptions.ReadTimeout:
            answers[name] = "no answer within 3 s"
    t0 = time.monotonic()
    code = n.stop()
    took = time.monotonic() - t0
    stop = {"exit code": code, "stopped within 5 s": took < 5}
    assert (answers, stop) == ({"empty": 200, "small": 200, "big": 200},
                               {"exit code": 0, "stopped within 5 s": True}), \
        (answers, stop, round(took, 1), n.log_text()[-400:])


# --- restart ---------------------------------------------------------------------------------

def test_restart_keeps_every_object_and_version(workdir, nodes):
    """SIGTERM, start again on the same data dir: objects (metadata, tags, storage class,
    multipart), a pending upload, every version and delete marker, and the bucket
    configurations are all there. A bucket configuration that cannot be set at all is
    reported at the end, after everything else was checked."""
    n = Node(workdir, "s3r", "127.0.50.2")
    nodes.append(n)
    start_own(n)
    key = create_key(n, "restart")
    s3 = client(key, endpoint="http://127.0.50.2:9000")
    wait_for(lambda: s3.create_bucket(Bucket="durable"), 10, "bucket creation")
    s3.create_bucket(Bucket="durable-v")
    config_errors = []

    def configure(what, call):
        try:
            call()
            return True
        except ClientError as e:
            config_errors.append(f"{what}: {e.response['Error']['Code']}")
            return False
    versioned = configure("PutBucketVersioning", lambda: s3.put_bucket_versioning(
        Bucket="durable-v", VersioningConfiguration={"Status": "Enabled"}))
    website = configure("PutBucketWebsite", lambda: s3.put_bucket_website(
        Bucket="durable", WebsiteConfiguration=WEBSITE))
    cors = configure("PutBucketCors", lambda: s3.put_bucket_cors(
        Bucket="durable", CORSConfiguration=CORS))
    objects = {f"obj/{i}": os.urandom(random.randint(0, 2 * MiB)) for i in range(20)}
    for k, data in objects.items():
        s3.put_object(Bucket="durable", Key=k, Body=data, Metadata={"i": k},
                      Tagging="t=1", StorageClass="REDUCED_REDUNDANCY" if k.endswith("7") else
                      "STANDARD")
    mp = os.urandom(11 * MiB)
    up = s3.create_multipart_upload(Bucket="durable", Key="multi")["UploadId"]
    parts = [{"PartNumber": i + 1, "ETag": s3.upload_part(
        Bucket="durable", Key="multi", UploadId=up, PartNumber=i + 1,
        Body=mp[i * 5 * MiB:(i + 1) * 5 * MiB])["ETag"]} for i in range(3)]
    s3.complete_multipart_upload(Bucket="durable", Key="multi", UploadId=up,
                                 MultipartUpload={"Parts": parts})
    pending = s3.create_multipart_upload(Bucket="durable", Key="pending")["UploadId"]
    s3.upload_part(Bucket="durable", Key="pending", UploadId=pending, PartNumber=1, Body=b"p1")
    versions, marker, dm = {}, None, None
    if versioned:
        for i in range(4):
            versions[s3.put_object(Bucket="durable-v", Key="doc", Body=f"rev {i}".encode())[
                "VersionId"]] = f"rev {i}".encode()
        marker = s3.delete_object(Bucket="durable-v", Key="gone-later")["VersionId"]
        s3.put_object(Bucket="durable-v", Key="deleted", Body=b"d")
        dm = s3.delete_object(Bucket="durable-v", Key="deleted")["VersionId"]

    def snapshot():
        v = s3.list_object_versions(Bucket="durable-v")
        snap = {
            "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]],
            "list": [(o["Key"], o["ETag"], o["Size"], o["StorageClass"])
                     for o in s3.list_objects_v2(Bucket="durable")["Contents"]],
            "versions": [(x["Key"], x["VersionId"], x["IsLatest"], x.get("ETag"))
                         for x in v.get("Versions", [])],
            "markers": [(x["Key"], x["VersionId"], x["IsLatest"])
                        for x in v.get("DeleteMarkers", [])],
            "uploads": [(u["Key"], u["UploadId"]) for u in
                        s3.list_multipart_uploads(Bucket="durable").get("Uploads", [])],
            "versioning": s3.get_bucket_versioning(Bucket="durable-v").get("Status"),
        }
        if website:
            snap["website"] = s3.get_bucket_website(Bucket="durable")["IndexDocument"]
        if cors:
            snap["cors"] = s3.get_bucket_cors(Bucket="durable")["CORSRules"]
        return snap
    before = snapshot()
    assert len(before["list"]) == 21 and before["uploads"] == [("pending", pending)]
    if versioned:
        assert len(before["versions"]) == 5 and ("gone-later", marker, True) in before["markers"]
    assert n.stop() == 0
    start_own(n)
    wait_for(lambda: s3.head_bucket(Bucket="durable"), 15, "S3 to serve after the restart")
    after = snapshot()
    assert after == before
    for k, data in objects.items():
        g = s3.get_object(Bucket="durable", Key=k)
        assert g["Body"].read() == data and g["Metadata"] == {"i": k}, k
        assert s3.get_object_tagging(Bucket="durable", Key=k)["TagSet"] == [
            {"Key": "t", "Value": "1"}]
    assert s3.get_object(Bucket="durable", Key="multi")["Body"].read() == mp
    for vid, data in versions.items():
        assert s3.get_object(Bucket="durable-v", Key="doc", VersionId=vid)["Body"].read() == data
    if versioned:
        with s3_error("NoSuchKey", 404):
            s3.get_object(Bucket="durable-v", Key="deleted")
        assert ("deleted", dm, True) in after["markers"]
    # The pending upload can still be completed.
    p = s3.list_parts(Bucket="durable", Key="pending", UploadId=pending)["Parts"]
    s3.complete_multipart_upload(Bucket="durable", Key="pending", UploadId=pending,
                                 MultipartUpload={"Parts": [{"PartNumber": 1,
                                                             "ETag": p[0]["ETag"]}]})
    assert s3.get_object(Bucket="durable", Key="pending")["Body"].read() == b"p1"
    # And writes keep working.
    s3.put_object(Bucket="durable", Key="after", Body=b"after restart")
    assert s3.get_object(Bucket="durable", Key="after")["Body"].read() == b"after restart"
    assert config_errors == [], f"bucket configurations could not be set: {config_errors}"
