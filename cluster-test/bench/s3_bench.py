#!/usr/bin/env python3
"""s3_bench.py - Gureum's S3 API against nginx (static files and WebDAV PUT), on the same machine
in the same run. Not a test: it measures and prints one table.

Servers (each alone on the machine while it is measured, one after the other):
  nginx   Debian's nginx, run in the foreground from a config in a temp dir (-p prefix) on
          127.0.2.1:8088, one worker process, access log off: GET of a static file, and
          `dav_methods PUT` for uploads (a new file per key).
  gureum  one node with every role on 127.0.60.1 (S3 on :9000), data dir in the temp dir,
          default settings (so RocksDB fsyncs its write-ahead log on every write:
          store.sync_writes=true; nginx never fsyncs). --nosync adds a row for a second node
          (127.0.60.2) with GUREUM_STORE_SYNC_WRITES=false, the like-for-like comparison.
          GETs are anonymous, from a public-read bucket (like nginx's static file); PUTs are
          signed: presigned URLs (SigV4 query auth, one per key, made before the run), each PUT
          carrying the x-amz-checksum-crc32 header of its body, as boto3 sends it by default.

Columns:
  PUT/GET 4 KiB ops/s at 1 and 32 concurrent connections, --duration s each (after a 1 s
          untimed warm-up): PUTs write keys k0..kN-1 round-robin (N = 10000, 2000 with --quick),
          GETs read one object. Load tool: wrk (C, one Lua script cycling over the URLs) when it
          is installed, else Python threads, each with its own keep-alive requests.Session
          (--client python forces it; the output names the tool used). Both servers get the
          same tool with the same requests apart from Gureum's signature and checksum.
  64 MiB PUT/GET MiB/s: one object at a time, median of --reps transfers, through
          requests (bytes body; streamed download in 1 MiB pieces, discarded).
  peak RSS MiB during a 1 GiB upload (256 MiB with --quick): Gureum: boto3 upload_fileobj
          (multipart, 8 MiB parts, 4 threads) from a generator, never more than the transfer
          manager's queue in memory; nginx: one chunked PUT of the same generator. The figure
          is VmHWM from /proc/PID/status (the peak is reset through /proc/PID/clear_refs just
          before; for nginx, its worker); the resident size just before is printed too.

Every loop is bounded in time or count; every process started is stopped on exit, Ctrl-C
included, and the temp dir removed (unless --keep).

usage: s3_bench.py [--quick] [--only gureum|nginx] [--duration 5] [--reps 3] [--nosync]
                   [--client wrk|python] [--json FILE] [--keep]
"""
import argparse
import atexit
import io
import json
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
import base64

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402  (cluster-test/harness.py: the gureum Node class, wait_for)

import boto3  # noqa: E402
import requests  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402

NGINX = os.environ.get("NGINX_BIN", shutil.which("nginx") or "/usr/sbin/nginx")
WRK = os.environ.get("WRK_BIN", shutil.which("wrk") or "")
NGINX_ADDR = ("127.0.2.1", 8088)
GUREUM_IPS = {"gureum": "127.0.60.1", "gureum-nosync": "127.0.60.2"}
MiB = 1 << 20
SMALL = 4096
BIG = 64 * MiB
WARMUP_S = 1.0
PROCS = []   # every process we started, for the exit cleanup
NODES = []   # harness.Node objects, stopped at exit


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cleanup():
    for n in NODES:
        try:
            n.stop(timeout=10)
        except Exception:
            n.kill()
    for p in PROCS:
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                p.kill()


def crc32_b64(data):
    return base64.b64encode(struct.pack(">I", zlib.crc32(data) & 0xFFFFFFFF)).decode()


def proc_status(pid, field):
    """A /proc/PID/status field in MiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid):
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class GenFile(io.RawIOBase):
    """A non-seekable file of `size` pseudo-random bytes, made as it is read (bounded memory)."""

    def __init__(self, size, block=8 * MiB):
        self.left = size
        self.block = bytearray(os.urandom(block))
        self.pos = 0
        self.n = 0

    def readable(self):
        return True

    def read(self, size=-1):
        if self.left <= 0:
            return b""
        if size is None or size < 0 or size > self.left:
            size = self.left
        out = bytearray()
        while len(out) < size:
            take = min(size - len(out), len(self.block) - self.pos)
            out += self.block[self.pos:self.pos + take]
            self.pos += take
            if self.pos == len(self.block):
                self.pos = 0
                self.n += 1
                self.block[:8] = self.n.to_bytes(8, "little")  # no two blocks alike
        self.left -= size
        return bytes(out)

    def chunks(self, size=MiB):
        while True:
            b = self.read(size)
            if not b:
                return
            yield b


# --- load generators -------------------------------------------------------------------------

WRK_LUA = r"""
-- args: file of request paths (one a line), body file ("" for GET), checksum header value
local paths, body, ck = {}, nil, nil
local idx = 0
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  if args[2] ~= "" then
    local f = io.open(args[2], "rb"); body = f:read("*a"); f:close()
  end
  ck = args[3]
  idx = math.random(#paths)
end
request = function()
  idx = idx % #paths + 1
  if body == nil then return wrk.format("GET", paths[idx]) end
  local h = {}
  if ck ~= "" then h["x-amz-checksum-crc32"] = ck end
  return wrk.format("PUT", paths[idx], h, body)
end
"""


def run_wrk(host, paths, method, body, ck, clients, duration, workdir):
    """ops/s and error count from wrk; paths are request targets ("/b/k?X-Amz-...")."""
    pf = os.path.join(workdir, f"paths-{os.getpid()}-{time.monotonic_ns()}.txt")
    with open(pf, "w") as f:
        f.write("\n".join(paths) + "\n")
    bf = ""
    if method == "PUT":
        bf = pf + ".body"
        with open(bf, "wb") as f:
            f.write(body)
    lua = os.path.join(workdir, "bench.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    threads = min(2, clients)

    def one(seconds):
        cmd = [WRK, "-t", str(threads), "-c", str(clients), "-d", f"{seconds:g}s", "--timeout",
               "10s", "-s", lua, f"http://{host}", "--", pf, bf, ck or ""]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        if r.returncode != 0:
            raise RuntimeError(f"wrk failed: {r.stderr.strip() or r.stdout.strip()}")
        m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
        total = re.search(r"(\d+) requests in", r.stdout)
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
        errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                         r.stdout)
        nerr = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
        return float(m.group(1)) if m else 0.0, int(total.group(1)) if total else 0, nerr
    one(WARMUP_S)
    return one(duration)


_tls = threading.local()


def run_python(host, paths, method, body, ck, clients, duration, workdir):
    """ops/s and error count from `clients` threads, each with its own keep-alive session."""
    del workdir
    counts, errors = [0] * clients, [0] * clients
    stop_at = [0.0]
    start = threading.Barrier(clients + 1)

    def worker(i):
        s = requests.Session()
        headers = {"x-amz-checksum-crc32": ck} if ck else {}
        j = i * 997
        start.wait()
        while time.monotonic() < stop_at[0]:
            url = f"http://{host}{paths[j % len(paths)]}"
            j += 1
            try:
                if method == "GET":
                    r = s.get(url, timeout=10)
                    r.content
                else:
                    r = s.put(url, data=body, headers=headers, timeout=10)
                ok = 200 <= r.status_code < 300
            except requests.RequestException:
                ok = False
            counts[i] += 1
            errors[i] += 0 if ok else 1

    for seconds in (WARMUP_S, duration):
        counts[:] = [0] * clients
        errors[:] = [0] * clients
        ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
        for t in ts:
            t.start()
        stop_at[0] = time.monotonic() + seconds
        t0 = time.monotonic()
        start.wait()
        for t in ts:
            t.join(seconds + 30)
        elapsed = time.monotonic() - t0
    return sum(counts) / elapsed, sum(counts), sum(errors)


# --- servers ---------------------------------------------------------------------------------

NGINX_CONF = """daemon off;
{user}worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  keepalive_requests 1000000;
  client_max_body_size 0;
  client_body_buffer_size 128k;
  client_body_temp_path {p}/tmp/body;
  proxy_temp_path {p}/tmp/proxy;
  fastcgi_temp_path {p}/tmp/fastcgi;
  uwsgi_temp_path {p}/tmp/uwsgi;
  scgi_temp_path {p}/tmp/scgi;
  server {{
    listen {ip}:{port};
    root {p}/www;
    location /dav/ {{
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
    }}
  }}
}}
"""


class NginxServer:
    name = "nginx"

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "nginx")
        os.makedirs(os.path.join(self.dir, "www", "dav"))
        os.makedirs(os.path.join(self.dir, "tmp"))
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            # As root the workers would run as nobody/www-data, shut out of our 0700 temp dir.
            user = "user root;\n" if os.geteuid() == 0 else ""
            f.write(NGINX_CONF.format(p=self.dir, ip=NGINX_ADDR[0], port=NGINX_ADDR[1],
                                      user=user))
        self.host = f"{NGINX_ADDR[0]}:{NGINX_ADDR[1]}"
        self.proc = None

    def start(self):
        logf = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c",
                                      os.path.join(self.dir, "nginx.conf"), "-e",
                                      os.path.join(self.dir, "error.log")],
                                     stdout=logf, stderr=subprocess.STDOUT)
        PROCS.append(self.proc)
        logf.close()

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {open(self.dir + '/error.log').read()}")
            return requests.get(f"http://{self.host}/", timeout=1).status_code in (403, 404)
        harness.wait_for(up, 10, "nginx to listen")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def worker_pid(self):
        r = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        pids = r.stdout.split()
        return int(pids[0]) if pids else self.proc.pid

    def put_small_paths(self, n):
        return [f"/dav/k{i}" for i in range(n)], None

    def prepare_get(self, body):
        with open(os.path.join(self.dir, "www", "obj4k"), "wb") as f:
            f.write(body)
        return ["/obj4k"]

    def big_urls(self, key):
        return f"http://{self.host}/dav/{key}", f"http://{self.host}/dav/{key}"

    def upload_stream(self, size):
        g = GenFile(size)
        r = requests.put(f"http://{self.host}/dav/huge", data=g.chunks(), timeout=600)
        r.raise_for_status()
        got = os.path.getsize(os.path.join(self.dir, "www", "dav", "huge"))
        if got != size:
            raise RuntimeError(f"nginx stored {got} bytes, not {size}")
        os.unlink(os.path.join(self.dir, "www", "dav", "huge"))

    def rss_pid(self):
        return self.worker_pid()


class GureumServer:
    def __init__(self, workdir, name, sync=True):
        self.name = name
        self.ip = GUREUM_IPS[name]
        env = {} if sync else {"GUREUM_STORE_SYNC_WRITES": "false"}
        self.node = harness.Node(workdir, name, self.ip, env=env)
        self.host = f"{self.ip}:9000"

    def start(self):
        NODES.append(self.node)
        self.node.start().wait_ready(15)

        def key():
            r = self.node.cli("key", "create", "bench", "--json")
            return json.loads(r.stdout) if r.returncode == 0 else None
        k = harness.wait_for(key, 15, "an access key")
        self.s3 = boto3.client("s3", endpoint_url=f"http://{self.host}", region_name="us-east-1",
                               aws_access_key_id=k["access_key_id"],
                               aws_secret_access_key=k["secret_access_key"],
                               config=Config(signature_version="s3v4",
                                             s3={"addressing_style": "path"},
                                             retries={"total_max_attempts": 1},
                                             read_timeout=120, max_pool_connections=16))
        harness.wait_for(lambda: self.s3.create_bucket(Bucket="bench"), 10, "bucket creation")
        self.s3.create_bucket(Bucket="bench-pub", ACL="public-read")

    def stop(self):
        self.node.stop(timeout=15)

    def _presign(self, key, method, bucket="bench"):
        op = "put_object" if method == "PUT" else "get_object"
        url = self.s3.generate_presigned_url(op, Params={"Bucket": bucket, "Key": key},
                                             ExpiresIn=3600)
        return url[len(f"http://{self.host}"):]

    def put_small_paths(self, n):
        return [self._presign(f"k{i}", "PUT") for i in range(n)], True

    def prepare_get(self, body):
        self.s3.put_object(Bucket="bench-pub", Key="obj4k", Body=body)
        return ["/bench-pub/obj4k"]

    def big_urls(self, key):
        put = f"http://{self.host}" + self._presign(key, "PUT", "bench-pub")
        return put, f"http://{self.host}/bench-pub/{key}"

    def upload_stream(self, size):
        cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                             max_concurrency=4)
        self.s3.upload_fileobj(GenFile(size), "bench", "huge", Config=cfg)
        got = self.s3.head_object(Bucket="bench", Key="huge")["ContentLength"]
        if got != size:
            raise RuntimeError(f"gureum stored {got} bytes, not {size}")
        self.s3.delete_object(Bucket="bench", Key="huge")

    def rss_pid(self):
        return self.node.proc.pid


# --- measurements ----------------------------------------------------------------------------

def measure(server, args, workdir, load, tool):
    res = {"system": server.name}
    body = os.urandom(SMALL)
    ck = crc32_b64(body)
    nkeys = 2000 if args.quick else 10000
    put_paths, signed = server.put_small_paths(nkeys)
    get_paths = server.prepare_get(body)
    for c in args.clients:
        rate, n, err = load(server.host, put_paths, "PUT", body, ck if signed else "", c,
                            args.duration, workdir)
        log(f"{server.name}: PUT 4 KiB, {c} clients: {rate:.0f} ops/s ({n} requests, "
            f"{err} errors, {tool})")
        res[f"put_{c}c"] = rate
        if err:
            res.setdefault("errors", []).append(f"PUT {c}c: {err} of {n} failed")
        rate, n, err = load(server.host, get_paths, "GET", None, "", c, args.duration, workdir)
        log(f"{server.name}: GET 4 KiB, {c} clients: {rate:.0f} ops/s ({n} requests, "
            f"{err} errors, {tool})")
        res[f"get_{c}c"] = rate
        if err:
            res.setdefault("errors", []).append(f"GET {c}c: {err} of {n} failed")

    big = os.urandom(BIG)
    big_ck = crc32_b64(big)
    puts, gets = [], []
    sess = requests.Session()
    for i in range(args.reps):
        put_url, get_url = server.big_urls(f"big{i}")
        headers = {"x-amz-checksum-crc32": big_ck} if isinstance(server, GureumServer) else {}
        t0 = time.monotonic()
        r = sess.put(put_url, data=big, headers=headers, timeout=300)
        dt = time.monotonic() - t0
        if r.status_code // 100 != 2:
            raise RuntimeError(f"64 MiB PUT: {r.status_code} {r.text[:300]}")
        puts.append(BIG / MiB / dt)
        t0 = time.monotonic()
        n = 0
        with sess.get(get_url, stream=True, timeout=300) as r:
            if r.status_code != 200:
                raise RuntimeError(f"64 MiB GET: {r.status_code} {r.text[:300]}")
            for piece in r.iter_content(MiB):
                n += len(piece)
        dt = time.monotonic() - t0
        if n != BIG:
            raise RuntimeError(f"64 MiB GET returned {n} bytes")
        gets.append(BIG / MiB / dt)
    res["big_put_mibs"] = statistics.median(puts)
    res["big_get_mibs"] = statistics.median(gets)
    log(f"{server.name}: 64 MiB PUT {res['big_put_mibs']:.0f} MiB/s, GET "
        f"{res['big_get_mibs']:.0f} MiB/s (median of {args.reps})")

    size = (256 if args.quick else 1024) * MiB
    pid = server.rss_pid()
    before = proc_status(pid, "VmRSS")
    reset = reset_peak(pid)
    t0 = time.monotonic()
    server.upload_stream(size)
    dt = time.monotonic() - t0
    res["rss_before_mib"] = before
    res["rss_peak_mib"] = proc_status(pid, "VmHWM")
    res["upload_mib"] = size // MiB
    res["upload_mibs"] = size / MiB / dt
    log(f"{server.name}: {size // MiB} MiB upload in {dt:.1f} s ({size / MiB / dt:.0f} MiB/s); "
        f"RSS {before:.0f} MiB before, peak {res['rss_peak_mib']:.0f} MiB during"
        + ("" if reset else " (peak not reset: the process's lifetime peak)"))
    return res


def print_table(results, args, tool):
    cols = [("system", "system", "{}"), ("put_1c", "PUT 1c ops/s", "{:.0f}"),
            ("put_32c", "PUT 32c ops/s", "{:.0f}"), ("get_1c", "GET 1c ops/s", "{:.0f}"),
            ("get_32c", "GET 32c ops/s", "{:.0f}"),
            ("big_put_mibs", "64MiB PUT MiB/s", "{:.0f}"),
            ("big_get_mibs", "64MiB GET MiB/s", "{:.0f}"),
            ("rss_peak_mib", "peak RSS MiB", "{:.0f}")]
    cols = [c for c in cols if not c[0].endswith("c") or c[0] in
            {f"{k}_{n}c" for k in ("put", "get") for n in args.clients}]
    print()
    print(f"4 KiB ops: {tool}; {args.duration:g} s per run. Big objects: requests, median of "
          f"{args.reps}. Peak RSS: during a {256 if args.quick else 1024} MiB upload "
          "(gureum: boto3 multipart; nginx worker: one chunked WebDAV PUT).")
    widths = [max(len(h), 10) for _, h, _ in cols]
    print("  ".join(h.rjust(w) if i else h.ljust(14) for i, ((_, h, _), w) in
                    enumerate(zip(cols, widths))))
    print("-" * (sum(widths) + 2 * len(widths) + 4))
    for r in results:
        cells = []
        for i, ((k, _, fmt), w) in enumerate(zip(cols, widths)):
            if "error" in r and k != "system" and k not in r:
                v = "ERROR"
            else:
                v = fmt.format(r[k]) if k in r else "-"
            cells.append(v.ljust(14) if i == 0 else v.rjust(w))
        print("  ".join(cells))
    for r in results:
        for e in r.get("errors", []):
            print(f"{r['system']}: {e}")
        if "error" in r:
            print(f"{r['system']}: ERROR {r['error']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="short runs: 2 s per load run, 1 rep, 256 MiB upload, 2000 PUT keys")
    ap.add_argument("--only", choices=["gureum", "nginx"], help="run one system only")
    ap.add_argument("--duration", type=float, help="seconds per 4 KiB load run (default 5)")
    ap.add_argument("--reps", type=int, help="64 MiB transfers per direction (default 3)")
    ap.add_argument("--clients", default="1,32", help="concurrent connections, comma-separated")
    ap.add_argument("--nosync", action="store_true",
                    help="also run a Gureum node with store.sync_writes=false")
    ap.add_argument("--client", choices=["wrk", "python"],
                    help="load tool for 4 KiB ops (default: wrk if installed)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    args = ap.parse_args()
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    args.reps = args.reps or (1 if args.quick else 3)
    args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    if not 0 < args.duration <= 120 or not 1 <= args.reps <= 20 or not args.clients or \
            any(not 1 <= c <= 256 for c in args.clients):
        ap.error("--duration in (0, 120], --reps 1..20, --clients each 1..256")
    if args.client == "wrk" and not WRK:
        ap.error("wrk is not installed (apt-get install -y wrk)")
    use_wrk = args.client != "python" and bool(WRK)
    tool = "wrk (C, Lua script over the URLs)" if use_wrk else \
        "Python threads, one keep-alive requests.Session each"
    load = run_wrk if use_wrk else run_python
    systems = [args.only] if args.only else ["nginx", "gureum"]
    if "nginx" in systems and not os.access(NGINX, os.X_OK):
        ap.error(f"nginx: {NGINX} not found (apt-get install -y nginx)")
    if "gureum" in systems and not os.access(harness.GUREUM, os.X_OK):
        ap.error(f"gureum: {harness.GUREUM} not found; build it first")
    if args.nosync and "gureum" in systems:
        systems.append("gureum-nosync")

    atexit.register(cleanup)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _f: sys.exit(128 + signum))
    workdir = tempfile.mkdtemp(prefix="s3-bench-")
    log(f"work dir {workdir}; systems {systems}; clients {args.clients}; "
        f"{args.duration:g} s per run; load tool: {tool}")
    results = []
    try:
        for s in systems:
            server = NginxServer(workdir) if s == "nginx" else \
                GureumServer(workdir, s, sync=(s == "gureum"))
            try:
                server.start()
                results.append(measure(server, args, workdir, load, tool))
            except Exception as e:  # one system failing still prints the others
                log(f"{s}: ERROR {e}")
                results.append({"system": s, "error": str(e)[:300]})
            finally:
                try:
                    server.stop()
                except Exception:
                    pass
    finally:
        cleanup()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results, args, tool)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if any("error" in r or r.get("errors") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
