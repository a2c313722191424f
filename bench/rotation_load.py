"""Constant-rate load through the Latchkey proxy, and the upstream it reaches, for
scripts/rotation-under-load.

  rotation_load.py upstream PORT KEY_PREFIX
      An HTTP/1.1 upstream that answers 200 only when the request's X-Api-Key is
      KEY_PREFIX-<connection>, the connection being the path's first segment; else 401. So a
      credential that decrypts wrongly, or not at all, cannot pass as a success. Prints "ready".

  rotation_load.py load RATE SECONDS CONNECTIONS API_KEY TARGETS_FILE RESULT_FILE
      Sends RATE requests/s for SECONDS, spread over connections c0..c{CONNECTIONS-1}, to the
      instances whose base URLs TARGETS_FILE lists (one a line, re-read every 100 ms: the script
      takes an instance out of it before stopping it, like a load balancer draining it).
      Constant rate like wrk2: request i is due at start + i/RATE whatever the previous ones
      took, and its latency counts from that due time, so a stall shows as latency instead of
      hiding as fewer requests. Writes a JSON summary to RESULT_FILE and prints it.

Written by hand: Debian's wrk has no constant-rate mode (wrk2's -R), and neither wrk2 nor vegeta
is packaged; Python's standard library is enough at a few hundred requests/s.
"""
import asyncio
import http.client
import json
import queue
import sys
import threading
import time
from collections import Counter


def upstream(port, prefix):
    body_ok = b'{"ok":true}'
    body_bad = b'{"ok":false,"error":"wrong key"}'

    def response(status, body):
        reason = b"OK" if status == 200 else b"Unauthorized"
        return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (status, reason, len(body)) + body)

    class Upstream(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.buffer = b""

        def data_received(self, data):
            self.buffer += data
            while b"\r\n\r\n" in self.buffer:
                head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                self.buffer = self.buffer[length:]  # the load sends no bodies
                connection = path.lstrip("/").split("/")[0].split("?")[0]
                ok = headers.get("x-api-key") == f"{prefix}-{connection}"
                self.transport.write(response(200, body_ok) if ok else response(401, body_bad))

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Upstream, "127.0.0.1", port)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Targets:
    """The live instances, from a file the driving script rewrites."""

    def __init__(self, path):
        self.path = path
        self.urls = []
        self.lock = threading.Lock()
        self.refresh()

    def refresh(self):
        try:
            with open(self.path) as f:
                urls = [line.strip() for line in f if line.strip()]
        except FileNotFoundError:
            urls = []
        with self.lock:
            self.urls = urls

    def pick(self, i):
        with self.lock:
            return self.urls[i % len(self.urls)] if self.urls else None


def load(rate, seconds, connections, api_key, targets_path, result_path):
    targets = Targets(targets_path)
    total = int(rate * seconds)
    due_queue = queue.Queue()
    results = []  # (due offset s, latency s from due, status or error text, target)
    results_lock = threading.Lock()
    start = time.monotonic() + 0.5

    def schedule():
        for i in range(total):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            due_queue.put((i, due))
        for _ in workers:
            due_queue.put(None)

    def refresher():
        while not done.is_set():
            targets.refresh()
            time.sleep(0.1)

    def worker():
        conns = {}  # instance URL → a kept-alive connection
        while True:
            item = due_queue.get()
            if item is None:
                break
            i, due = item
            target = targets.pick(i)
            connection = f"c{i % connections}"
            if target is None:
                outcome = "no live instance"
            else:
                host = target.removeprefix("http://")
                try:
                    conn = conns.get(host)
                    if conn is None:
                        conn = conns[host] = http.client.HTTPConnection(host, timeout=10)
                    conn.request("GET", f"/v1/proxy/{connection}/{connection}/items?i={i}",
                                 headers={"Authorization": f"Bearer {api_key}"})
                    response = conn.getresponse()
                    body = response.read()
                    outcome = response.status
                    if response.status != 200:
                        outcome = f"{response.status} {body[:200].decode(errors='replace')}"
                except Exception as e:  # any socket or protocol error is a failed request
                    conns.pop(host, None)
                    outcome = f"{type(e).__name__}: {e}"
            latency = time.monotonic() - due
            with results_lock:
                results.append((due - start, latency, outcome, target))

    done = threading.Event()
    workers = [threading.Thread(target=worker, daemon=True) for _ in range(64)]
    for w in workers:
        w.start()
    threading.Thread(target=refresher, daemon=True).start()
    scheduler = threading.Thread(target=schedule)
    scheduler.start()
    scheduler.join()
    for w in workers:
        w.join()
    done.set()

    latencies = sorted(r[1] for r in results)
    failures = [r for r in results if r[2] != 200]
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
    summary = {
        "rate": rate,
        "seconds": seconds,
        "requests": len(results),
        "ok": len(results) - len(failures),
        "failed": len(failures),
        "achieved_rate": round(len(results) / (max(r[0] for r in results) + 1e-9), 1),
        "p50_ms": round(q(0.50), 2),
        "p99_ms": round(q(0.99), 2),
        "max_ms": round(latencies[-1] * 1000, 2),
        "failures_by_kind": dict(Counter(str(r[2])[:120] for r in failures).most_common(10)),
        "first_failures": [
            {"at_s": round(r[0], 3), "target": r[3], "outcome": str(r[2])[:200]} for r in failures[:10]
        ],
    }
    with open(result_path, "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    if sys.argv[1] == "upstream":
        upstream(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "load":
        _, _, rate, seconds, conns, api_key, targets_path, result_path = sys.argv
        load(float(rate), float(seconds), int(conns), api_key, targets_path, result_path)
    else:
        sys.exit(__doc__)
