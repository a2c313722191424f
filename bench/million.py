#!/usr/bin/env python3
"""A million connections: `latchkey serve` over N stored API-key connections (default 10^6).

For each backend (SQLite, PostgreSQL) it
  1. seeds N connections with `latchkey connection import` (the real path: each line parsed,
     checked and sealed with AES-256-GCM) and prints how long that took;
  2. starts `latchkey serve` and measures start-up to ready: from the process's spawn to the
     first `200` from `/healthz`, polled every millisecond, best of START_ROUNDS starts;
  3. runs wrk through the proxy, alternating rounds: `hot`, every request on one connection, and
     `spread`, every request on a connection drawn at random from all N (a wrk Lua script);
     prints requests/s of each and the ratio spread / hot (the issue's bar: >= 0.7);
  4. prints the server's RSS idle after start and its peak (VmHWM) after the runs (bar: 128 MB).

    bench/million.py            env: N=1000000, BACKENDS="sqlite postgres", DURATION=10, ROUNDS=3,
                                CONNS=32, START_ROUNDS=5, LATCHKEY_BIN=target/release/latchkey,
                                LATCHKEY_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test)

The upstream is bench/upstream.py (Python asyncio, 200 with a small JSON body); wrk, the
upstream and latchkey share the machine's cores, so compare the ratio, not the absolute figures.
"""
import base64, json, os, re, secrets, socket, subprocess, sys, tempfile, time, urllib.request

N = int(os.environ.get("N", "1000000"))
BACKENDS = os.environ.get("BACKENDS", "sqlite postgres").split()
DURATION = int(os.environ.get("DURATION", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
CONNS = int(os.environ.get("CONNS", "32"))
START_ROUNDS = int(os.environ.get("START_ROUNDS", "5"))
BIN = os.path.abspath(os.environ.get("LATCHKEY_BIN", "target/release/latchkey"))
PG = os.environ.get("LATCHKEY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
API_KEY = "lk_bench_" + secrets.token_hex(16)
HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def healthy(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


def kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def wrk(url, script=None):
    args = ["wrk", "-t1", f"-c{CONNS}", f"-d{DURATION}s", "--latency",
            "-H", f"Authorization: Bearer {API_KEY}"]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"wrk reported errors for {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    return rps, p99


def main():
    work = tempfile.mkdtemp(prefix="lk-million-")
    up_port = free_port()
    upstream = subprocess.Popen([sys.executable, os.path.join(HERE, "upstream.py"), str(up_port)],
                                stdout=subprocess.PIPE, text=True)
    upstream.stdout.readline()
    os.makedirs(f"{work}/connectors")
    with open(f"{work}/connectors/bench.yaml", "w") as f:
        f.write(f"id: bench\nname: Bench\nbase_url: http://127.0.0.1:{up_port}\nauth:\n"
                "  - type: api_key\n    apply: {in: header, name: X-Api-Key}\n")
    lines = f"{work}/connections.jsonl"
    with open(lines, "w") as f:
        for i in range(N):
            f.write(json.dumps({"id": f"c{i}", "connector": "bench",
                                "credentials": {"api_key": f"key-{i:08d}"}}) + "\n")
    spread = f"{work}/spread.lua"
    with open(spread, "w") as f:
        f.write(f"math.randomseed(os.time())\n"
                f"request = function()\n"
                f"  return wrk.format(nil, '/v1/proxy/c' .. math.random(0, {N - 1}) .. '/items/1')\n"
                f"end\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATCHKEY_")}
    env["LATCHKEY_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
    env["LATCHKEY_API_KEY"] = API_KEY
    env["LATCHKEY_LOG"] = "warn"
    print(f"N = {N:,}; wrk -t1 -c{CONNS} -d{DURATION}s, {ROUNDS} alternating rounds; "
          f"{os.cpu_count()} cores shared by wrk, the upstream and latchkey")
    print()
    print("| backend | import | start-up to ready (best of %d) | hot req/s | spread req/s | spread / hot | hot p99 | spread p99 | RSS idle | RSS peak |" % START_ROUNDS)
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    try:
        for backend in BACKENDS:
            args = [BIN, "--data-dir", f"{work}/data-{backend}", "--connectors", f"{work}/connectors"]
            schema = None
            if backend == "postgres":
                schema = "lk_million_" + secrets.token_hex(4)
                subprocess.run(["psql", "-q", PG, "-c", f"CREATE SCHEMA {schema}"], check=True)
                sep = "&" if "?" in PG else "?"
                args += ["--database-url", f"{PG}{sep}options=-c%20search_path%3D{schema}"]
            try:
                started = time.monotonic()
                subprocess.run(args + ["connection", "import", lines], check=True, env=env,
                               stdout=subprocess.DEVNULL)
                imported = time.monotonic() - started
                starts = []
                server = None
                for attempt in range(START_ROUNDS):
                    port = free_port()
                    spawned = time.monotonic()
                    server = subprocess.Popen(args + ["serve", "--listen", f"127.0.0.1:{port}"],
                                              env=env, stdout=subprocess.DEVNULL,
                                              stderr=open(f"{work}/serve-{backend}.log", "a"))
                    while not healthy(port):
                        if server.poll() is not None:
                            sys.exit(f"serve exited: see {work}/serve-{backend}.log")
                        time.sleep(0.001)
                    starts.append(time.monotonic() - spawned)
                    if attempt < START_ROUNDS - 1:
                        server.terminate(); server.wait()
                time.sleep(1)
                rss_idle = kib(server.pid, "VmRSS")
                base = f"http://127.0.0.1:{port}"
                hot, spread_runs = [], []
                for _ in range(ROUNDS):
                    hot.append(wrk(f"{base}/v1/proxy/c0/items/1"))
                    spread_runs.append(wrk(base, spread))
                rss_peak = kib(server.pid, "VmHWM")
                server.terminate(); server.wait()
                hot_rps = sorted(r for r, _ in hot)[len(hot) // 2]
                spread_rps = sorted(r for r, _ in spread_runs)[len(spread_runs) // 2]
                print(f"| {backend} | {imported:.0f} s ({N / imported:,.0f}/s) | {min(starts) * 1000:.0f} ms "
                      f"| {hot_rps:,.0f} | {spread_rps:,.0f} | {spread_rps / hot_rps:.2f} "
                      f"| {', '.join(p for _, p in hot)} | {', '.join(p for _, p in spread_runs)} "
                      f"| {rss_idle / 1024:.0f} MB | {rss_peak / 1024:.0f} MB |", flush=True)
            finally:
                if schema:
                    subprocess.run(["psql", "-q", PG, "-c", f"DROP SCHEMA {schema} CASCADE"],
                                   check=False, capture_output=True)
    finally:
        upstream.terminate()
        subprocess.run(["rm", "-rf", work])


main()
