#!/usr/bin/env python3
"""The 1,000-refresh SIGKILL run: `latchkey serve` against a provider that rotates refresh
tokens strictly (a spent refresh token revokes its family; a rotation invalidates the previous
access token), forced refreshes while the server is SIGKILLed at random points and restarted,
then a check that every connection either works or is visibly `needs_reauth`.

A connection is *silently broken* when the API reads it `ok` (after the restart's start-up check
has run) but a request through the proxy fails. The run's figure is how many there are: 0 is
the promise.

Usage: scripts/refresh-sigkill-run.py [--binary PATH] [--refreshes 1000] [--connections 20]
Needs only python3 and a built `latchkey` (default: target/debug/latchkey, or $CARGO_TARGET_DIR).
"""

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Provider:
    """Token families: refresh token `rt.<family>.<n>`, access token `at.<family>.<n>`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.current = {}  # family -> n
        self.revoked = set()
        self.rotations = 0
        self.reuses = 0

    def refresh(self, token):
        try:
            _, family, n = token.split(".")
            n = int(n)
        except ValueError:
            return None
        with self.lock:
            current = self.current.setdefault(family, 0)
            if family in self.revoked:
                return None
            if n != current:
                # A spent refresh token: revoke the family, as providers do.
                self.reuses += 1
                self.revoked.add(family)
                return None
            self.current[family] = n + 1
            self.rotations += 1
            return f"at.{family}.{n + 1}", f"rt.{family}.{n + 1}"

    def accepts(self, access_token):
        try:
            _, family, n = access_token.split(".")
        except ValueError:
            return False
        with self.lock:
            return family not in self.revoked and int(n) == self.current.setdefault(family, 0)


def provider_server(provider):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except OSError:
                pass  # Latchkey was killed while waiting for the answer.

        def do_POST(self):
            length = int(self.headers.get("content-length", 0))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            # Widen the window between the provider's answer and the commit.
            time.sleep(random.uniform(0, 0.3))
            tokens = provider.refresh(form.get("refresh_token", [""])[0])
            if tokens is None:
                self.reply(400, {"error": "invalid_grant"})
            else:
                at, rt = tokens
                self.reply(200, {"access_token": at, "refresh_token": rt, "expires_in": 3600})

        def do_GET(self):
            token = self.headers.get("authorization", "").removeprefix("Bearer ")
            if provider.accepts(token):
                self.reply(200, {"ok": True})
            else:
                self.reply(401, {"error": "invalid_token"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Latchkey:
    def __init__(self, binary, data_dir, connectors, port):
        self.binary, self.port = binary, port
        self.base = f"http://127.0.0.1:{port}"
        self.env = dict(
            os.environ,
            LATCHKEY_DATA_DIR=data_dir,
            LATCHKEY_CONNECTORS=connectors,
            LATCHKEY_API_KEY="lk_sigkill_run_key",
            LATCHKEY_LOG="warn",
        )
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--refresh-interval", "1"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.env["LATCHKEY_DATA_DIR"], "serve.log"), "ab"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.call("GET", "/healthz", auth=False)[0] == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                sys.exit(f"latchkey serve exited with {self.process.returncode}; see serve.log")
            time.sleep(0.05)
        sys.exit("latchkey serve did not become healthy in 60 s")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def call(self, method, path, body=None, auth=True, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("content-type", "application/json")
        if auth:
            request.add_header("authorization", "Bearer lk_sigkill_run_key")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    parser.add_argument("--binary", default=os.path.join(target, "debug", "latchkey"))
    parser.add_argument("--refreshes", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    random.seed(args.seed)

    provider = Provider()
    mock = provider_server(provider)
    uri = f"http://127.0.0.1:{mock.server_address[1]}"
    work = tempfile.mkdtemp(prefix="latchkey-sigkill-")
    connectors = os.path.join(work, "connectors")
    os.makedirs(connectors)
    with open(os.path.join(connectors, "rotating.yaml"), "w") as f:
        f.write(
            f"id: rotating\nname: Rotating\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n"
            f"    authorize_url: {uri}/authorize\n    token_url: {uri}/token\n"
        )
    data_dir = os.path.join(work, "data")
    os.makedirs(data_dir)
    server = Latchkey(args.binary, data_dir, connectors, free_port())
    server.start()
    status, body = server.call(
        "POST",
        "/v1/integrations",
        {"id": "app", "connector": "rotating", "client_id": "cid", "client_secret": "csecret"},
    )
    assert status in (200, 201), (status, body)
    ids = [f"c{i}" for i in range(args.connections)]
    families = iter(range(1_000_000))

    def connect(cid):
        """What a user re-connecting does: a new token family."""
        family = f"f{next(families)}"
        status, body = server.call(
            "POST",
            "/v1/connections?test=false",
            {
                "id": cid,
                "connector": "rotating",
                "integration": "app",
                "credentials": {"access_token": f"at.{family}.0", "refresh_token": f"rt.{family}.0"},
            },
        )
        assert status == 201, (status, body)

    for cid in ids:
        connect(cid)
    reconnects = 0

    kills = 0
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=8)
    while provider.rotations < args.refreshes:
        stop_at = time.monotonic() + random.uniform(0.3, 3.0)

        def hammer():
            while time.monotonic() < stop_at:
                try:
                    server.call("POST", f"/v1/connections/{random.choice(ids)}/refresh", {}, timeout=5)
                except OSError:
                    return

        futures = [pool.submit(hammer) for _ in range(8)]
        time.sleep(max(0.0, stop_at - time.monotonic()))
        server.kill()
        kills += 1
        for future in futures:
            future.result()
        server.start()
        # Connections whose refresh token a crash spent are visibly `needs_reauth`: their
        # users connect again, so the run keeps refreshing every connection.
        status, body = server.call("GET", "/v1/connections")
        for summary in json.loads(body) if status == 200 else []:
            if summary.get("status") == "needs_reauth":
                server.call("DELETE", f"/v1/connections/{summary['id']}")
                connect(summary["id"])
                reconnects += 1
        print(f"\rrotations {provider.rotations}, kills {kills}, reconnects {reconnects}", end="", flush=True)
    print()

    # The last restart's start-up check waits for the killed holder's leases (30 s) to run out.
    settle = 40
    print(f"waiting {settle} s for the start-up check of interrupted refreshes")
    time.sleep(settle)
    works = visibly = silently = other = 0
    for cid in ids:
        status, body = server.call("GET", f"/v1/connections/{cid}")
        state = json.loads(body).get("status")
        proxied, _ = server.call("GET", f"/v1/proxy/{cid}/me")
        if state == "ok" and proxied == 200:
            works += 1
        elif state == "ok":
            silently += 1
            print(f"silently broken: {cid} reads ok, proxy answered {proxied}")
        elif state == "needs_reauth":
            visibly += 1
        else:
            other += 1
            print(f"{cid}: status {state}, proxy {proxied}")
    server.kill()
    mock.shutdown()
    elapsed = time.monotonic() - started
    print(
        json.dumps(
            {
                "connections": len(ids),
                "refreshes_rotated": provider.rotations,
                "sigkills": kills,
                "refresh_tokens_reused": provider.reuses,
                "reconnects_after_needs_reauth": reconnects,
                "works": works,
                "needs_reauth": visibly,
                "silently_broken": silently,
                "other": other,
                "seconds": round(elapsed),
            }
        )
    )
    sys.exit(1 if silently or other else 0)


if __name__ == "__main__":
    main()
