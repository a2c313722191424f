#!/usr/bin/env python3
"""How fast a key revocation made through one `latchkey serve` holds on another sharing the same
PostgreSQL database (change notifications, docs/deploy.md). Starts two instances on a fresh
schema, then ROUNDS times: makes an API key through instance A, uses it on B (so B caches it),
revokes it through A, and polls B every millisecond until B refuses it. Prints the distribution
of the time from A's 204 to B's first 401.

    bench/fleet_invalidation.py [ROUNDS]   (env: LATCHKEY_BIN, default target/release/latchkey;
                                            LATCHKEY_TEST_POSTGRES_URL, default
                                            postgres://postgres@127.0.0.1:5432/test)
"""
import json, os, secrets, socket, statistics, subprocess, sys, tempfile, time, urllib.request, urllib.error

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 50
BIN = os.environ.get("LATCHKEY_BIN", "target/release/latchkey")
SERVER = os.environ.get("LATCHKEY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
ADMIN = "lk_bench_" + secrets.token_hex(16)


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def call(port, method, path, key, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def psql(sql):
    subprocess.run(["psql", SERVER, "-q", "-c", sql], check=True, capture_output=True)


schema = "lk_bench_" + secrets.token_hex(4)
psql(f"CREATE SCHEMA {schema}")
sep = "&" if "?" in SERVER else "?"
url = f"{SERVER}{sep}options=-c%20search_path%3D{schema}"
work = tempfile.mkdtemp()
env = dict(os.environ, LATCHKEY_DATABASE_URL=url, LATCHKEY_API_KEY=ADMIN,
           LATCHKEY_MASTER_KEY="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", LATCHKEY_LOG="warn")
procs, ports = [], []
try:
    for name in ("a", "b"):
        port = free_port(); ports.append(port)
        os.makedirs(f"{work}/{name}")
        procs.append(subprocess.Popen([BIN, "--data-dir", f"{work}/{name}", "serve", "--listen", f"127.0.0.1:{port}"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=open(f"{work}/{name}.log", "w")))
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1); break
            except OSError:
                time.sleep(0.05)
    a, b = ports
    seen = []
    for _ in range(ROUNDS):
        status, body = call(a, "POST", "/v1/api-keys", ADMIN, {"name": "bench", "scopes": ["connections:read"]})
        assert status in (200, 201), (status, body)
        made = json.loads(body)
        assert call(b, "GET", "/v1/connections", made["key"])[0] == 200
        status, _ = call(a, "DELETE", f"/v1/api-keys/{made['id']}", ADMIN)
        assert status == 204, status
        revoked = time.perf_counter()
        while call(b, "GET", "/v1/connections", made["key"])[0] != 401:
            if time.perf_counter() - revoked > 10:
                sys.exit("instance B still accepts a key revoked 10 s ago")
            time.sleep(0.001)
        seen.append((time.perf_counter() - revoked) * 1000)
    seen.sort()
    print(f"{ROUNDS} revocations through A, time until B refuses the key (ms, including one poll "
          f"round trip): median {statistics.median(seen):.1f}, p90 {seen[int(len(seen) * 0.9)]:.1f}, "
          f"max {seen[-1]:.1f}")
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()
    psql(f"DROP SCHEMA {schema} CASCADE")
