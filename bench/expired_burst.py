#!/usr/bin/env python3
"""1,000 concurrent proxied requests on one expired OAuth2 token (issue: exactly one token call,
all served within 1.5x one refresh round trip).

Starts a provider (Python: a token endpoint that answers after DELAY seconds with a rotated
access and refresh token), its API (a separate asyncio process, so that it is not what the burst
waits on: 401 to the expired token `stale`, 200 to any other) and `latchkey serve` (release
build). Then:
  1. the baseline: one request on a connection whose token has expired, alone: its latency is one
     refresh round trip plus one API call (best of 5, each on a fresh expired connection);
  2. the floor: the same burst on a connection whose token is valid (what the harness, the API and
     the proxy cost without any refresh);
  3. the burst: CONCURRENCY requests on one other expired connection, all sent at once over
     connections opened beforehand (asyncio); counts the token calls (must be 1) and the statuses
     (must all be 200), and prints the latency distribution, max / baseline, and what the burst
     took beyond the floor in baselines.

    bench/expired_burst.py      env: CONCURRENCY=1000, DELAY=0.2, LATCHKEY_BIN=target/release/latchkey
"""
import asyncio, base64, json, os, resource, secrets, socket, subprocess, sys, tempfile, threading, time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONCURRENCY = int(os.environ.get("CONCURRENCY", "1000"))
DELAY = float(os.environ.get("DELAY", "0.2"))
BIN = os.path.abspath(os.environ.get("LATCHKEY_BIN", "target/release/latchkey"))
API_KEY = "lk_bench_" + secrets.token_hex(16)

lock = threading.Lock()
token_calls = 0


class Provider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        global token_calls
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            token_calls += 1
            n = token_calls
        time.sleep(DELAY)
        self.send(200, {"access_token": f"at-{n}", "refresh_token": f"rt-{n}",
                        "token_type": "Bearer", "expires_in": 3600})


API = r"""
import asyncio, sys
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
NO = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"
class Api(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end].lower(), self.buffer[end + 4:]
            self.transport.write(NO if b"authorization: bearer stale" in head else OK)
async def main():
    server = await asyncio.get_running_loop().create_server(Api, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def call(port, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {API_KEY}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def expired(port, id):
    status, _ = call(port, "POST", "/v1/connections?test=false", {
        "id": id, "connector": "prov", "integration": "app",
        "credentials": {"access_token": "stale", "refresh_token": "rt-0"},
        "expires_at": "2020-01-01T00:00:00Z"})
    assert status == 201, status


async def burst(port, id):
    request = (f"GET /v1/proxy/{id}/me HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {API_KEY}\r\n\r\n").encode()
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CONCURRENCY)]

    async def one(reader, writer, start):
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n")
                       if l.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        writer.close()
        return status, time.monotonic() - start

    start = time.monotonic()
    return await asyncio.gather(*(one(r, w, start) for r, w in streams))


def main():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,000 sockets each side
    provider = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    provider.daemon_threads = True
    threading.Thread(target=provider.serve_forever, daemon=True).start()
    prov = f"http://127.0.0.1:{provider.server_address[1]}"
    api = subprocess.Popen([sys.executable, "-c", API], stdout=subprocess.PIPE, text=True)
    api_base = f"http://127.0.0.1:{api.stdout.readline().strip()}"
    work = tempfile.mkdtemp(prefix="lk-burst-")
    os.makedirs(f"{work}/connectors")
    with open(f"{work}/connectors/prov.yaml", "w") as f:
        f.write(f"id: prov\nname: Prov\nbase_url: {api_base}\nauth:\n  - type: oauth2\n"
                f"    authorize_url: {prov}/authorize\n    token_url: {prov}/token\n")
    with open(f"{work}/secret", "w") as f:
        f.write("csecret")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATCHKEY_")}
    env["LATCHKEY_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
    env["LATCHKEY_API_KEY"] = API_KEY
    env["LATCHKEY_LOG"] = "warn"
    args = [BIN, "--data-dir", f"{work}/data", "--connectors", f"{work}/connectors"]
    subprocess.run(args + ["integration", "add", "app", "--connector", "prov", "--client-id", "cid",
                           "--client-secret-file", f"{work}/secret"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen(args + ["serve", "--listen", f"127.0.0.1:{port}",
                                      "--refresh-interval", "3600"], env=env,
                              stderr=open(f"{work}/serve.log", "w"))
    try:
        for _ in range(300):
            try:
                call(port, "GET", "/healthz"); break
            except Exception:
                time.sleep(0.05)
        solos = []
        for i in range(5):
            expired(port, f"solo{i}")
            started = time.monotonic()
            status, _ = call(port, "GET", f"/v1/proxy/solo{i}/me")
            solos.append(time.monotonic() - started)
            assert status == 200, status
        baseline = min(solos)
        # The harness's own floor: the same burst on a connection whose token is valid.
        call(port, "POST", "/v1/connections?test=false", {
            "id": "fresh", "connector": "prov", "integration": "app",
            "credentials": {"access_token": "valid", "refresh_token": "rt-x"},
            "expires_in": 3600})
        floor = sorted(t for _, t in asyncio.run(burst(port, "fresh")))
        before = token_calls
        expired(port, "burst")
        results = asyncio.run(burst(port, "burst"))
        calls = token_calls - before
        statuses = {}
        for status, _ in results:
            statuses[status] = statuses.get(status, 0) + 1
        latencies = sorted(t for _, t in results)
        pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
        print(f"token endpoint delay {DELAY * 1000:.0f} ms; {os.cpu_count()} cores shared by this "
              f"script, the provider and latchkey")
        print(f"baseline (one request on an expired token, alone, best of 5): {baseline * 1000:.0f} ms")
        print(f"burst of {CONCURRENCY}: token calls {calls}; statuses {statuses}")
        print(f"latency p50 {pick(0.5) * 1000:.0f} ms, p99 {pick(0.99) * 1000:.0f} ms, "
              f"max {latencies[-1] * 1000:.0f} ms; max / baseline {latencies[-1] / baseline:.2f}")
        print(f"the same burst on a valid token (the harness's floor): p50 "
              f"{floor[len(floor) // 2] * 1000:.0f} ms, max {floor[-1] * 1000:.0f} ms; "
              f"(max - floor max) / baseline {(latencies[-1] - floor[-1]) / baseline:.2f}")
        ok = calls == 1 and statuses == {200: CONCURRENCY}
        sys.exit(0 if ok else 1)
    finally:
        server.terminate(); server.wait()
        api.terminate()
        subprocess.run(["rm", "-rf", work])


main()
