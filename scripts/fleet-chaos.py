#!/usr/bin/env python3
"""The fleet chaos run: three `latchkey serve` instances on one PostgreSQL database (a fresh
schema), a provider with one-time refresh tokens and refresh-token family revocation (a spent
refresh token presented again revokes its whole family), N connections whose access tokens live
a few seconds, proxied traffic spread over the fleet, and random SIGKILL + restart of instances
until the provider has rotated ~1,000 refresh tokens. Then every connection is classified:

- ok and working: `ok`, its access token is the provider's newest for its family, and a forced
  refresh through the fleet succeeds with the refresh token it holds;
- needs_reauth, explained: its family was revoked because a refresh token was presented again
  after the provider had rotated it for an instance that was SIGKILLed between sending that
  request and presenting the token again (the answer was lost with the instance);
- needs_reauth, unexplained: flagged with no such kill (a double send by a live instance);
- silently broken: reads `ok` but its refresh token is spent or its family revoked.

Connections flagged `needs_reauth` during the run are deleted and made again under the same
id with a new family, as an app whose user connects again would, and their flags are classified
the same way; a refresh of the deleted connection must never land on the new one. Silently broken
and unexplained must be 0; the script exits 1 otherwise.

Each instance has its own connectors directory whose token URL names the instance
(`/token/<slot>`), so the provider knows which instance asked for each rotation.

Usage: scripts/fleet-chaos.py [--binary PATH] [--refreshes 1000] [--connections 30]
                              [--expires-in 4] [--seed N]
Needs python3, psql, a built `latchkey` (default $CARGO_TARGET_DIR/debug/latchkey or
target/debug/latchkey) and the PostgreSQL server at LATCHKEY_TEST_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/test).
"""

import argparse
import http.client
import json
import os
import random
import secrets
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "lk_fleet_chaos_" + secrets.token_hex(12)
MASTER_KEY = "ZmxlZXQtY2hhb3MtcnVuLW1hc3Rlci1rZXktMzJieXQ="
INSTANCES = 3
# What a call through a killed instance raises.
UNANSWERED = (OSError, http.client.HTTPException)
# A killed holder's refresh lease lapses after 30 s; a takeover or a start-up check follows.
SETTLE_LIMIT = 300


class Provider:
    """Token families: refresh token `rt.<family>.<n>`, access token `at.<family>.<n>`."""

    def __init__(self, expires_in):
        self.lock = threading.Lock()
        self.expires_in = expires_in
        self.current = {}  # family -> n
        self.revoked = {}  # family -> reuse record
        self.rotations_log = {}  # (family, n) -> {"slot", "asked", "long"}: the rotation n -> n+1
        self.rotations = 0
        self.reuses = 0

    def refresh(self, token, slot, asked):
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
                # A spent refresh token: revoke the family, as providers with rotation do.
                self.reuses += 1
                self.revoked[family] = {"token": n, "slot": slot, "at": time.monotonic()}
                return None
            self.current[family] = n + 1
            self.rotations += 1
            self.rotations_log[(family, n)] = {
                "slot": slot,
                "asked": asked,
                "rotated": time.monotonic(),
                "long": self.expires_in > 60,
            }
            return f"at.{family}.{n + 1}", f"rt.{family}.{n + 1}", self.expires_in

    def accepts(self, access_token):
        try:
            _, family, n = access_token.split(".")
            n = int(n)
        except ValueError:
            return False
        with self.lock:
            return family not in self.revoked and n == self.current.setdefault(family, 0)

    def newest_is_long(self, family):
        with self.lock:
            n = self.current.get(family, 0)
            return n > 0 and self.rotations_log[(family, n - 1)]["long"]


def provider_server(provider):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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
                pass  # The instance was killed while waiting for the answer.

        def do_POST(self):
            asked = time.monotonic()
            length = int(self.headers.get("content-length", 0))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            slot = int(self.path.rsplit("/", 1)[-1])
            # Widen the windows before the rotation and between it and the answer.
            time.sleep(random.uniform(0, 0.1))
            tokens = provider.refresh(form.get("refresh_token", [""])[0], slot, asked)
            time.sleep(random.uniform(0, 0.2))
            if tokens is None:
                self.reply(400, {"error": "invalid_grant"})
            else:
                at, rt, expires_in = tokens
                self.reply(200, {"access_token": at, "refresh_token": rt, "expires_in": expires_in})

        def do_GET(self):
            token = self.headers.get("authorization", "").removeprefix("Bearer ")
            if provider.accepts(token):
                self.reply(200, {"ok": True})
            else:
                self.reply(401, {"error": "invalid_token"})

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # A killed instance resets its pooled connections: expected here.

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("authorization", f"Bearer {API_KEY}")
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Instance:
    def __init__(self, slot, binary, work, env):
        self.slot, self.binary = slot, binary
        self.port = free_port()
        self.dir = os.path.join(work, f"i{slot}")
        os.makedirs(os.path.join(self.dir, "data"))
        self.env = env
        self.process = None
        self.kills = []  # monotonic times of this slot's SIGKILLs

    def start(self):
        log = open(os.path.join(self.dir, "serve.log"), "ab")
        self.process = subprocess.Popen(
            [
                self.binary, "--data-dir", os.path.join(self.dir, "data"),
                "--connectors", os.path.join(self.dir, "connectors"),
                "serve", "--listen", f"127.0.0.1:{self.port}",
                "--refresh-interval", "1", "--access-log", "false",
            ],
            env=self.env, stdout=subprocess.DEVNULL, stderr=log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return
            except OSError:
                pass
            if self.process.poll() is not None:
                sys.exit(f"instance {self.slot} exited with {self.process.returncode}; see {self.dir}/serve.log")
            time.sleep(0.05)
        sys.exit(f"instance {self.slot} did not become healthy in 60 s")

    def kill(self):
        self.kills.append(time.monotonic())
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def alive(self):
        return self.process is not None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    parser.add_argument("--binary", default=os.path.join(target, "debug", "latchkey"))
    parser.add_argument("--refreshes", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=30)
    parser.add_argument("--expires-in", type=int, default=4, help="access token lifetime (s)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    random.seed(args.seed)
    chaos = random.Random(args.seed)

    server_url = os.environ.get("LATCHKEY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    schema = "lk_chaos_" + secrets.token_hex(4)

    def psql(statement):
        out = subprocess.run(["psql", server_url, "-qtA", "-c", statement], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    psql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in server_url else "?"
    database_url = f"{server_url}{sep}options=-c%20search_path%3D{schema}"

    provider = Provider(args.expires_in)
    mock = provider_server(provider)
    uri = f"http://127.0.0.1:{mock.server_address[1]}"
    work = tempfile.mkdtemp(prefix="latchkey-fleet-chaos-")
    env = dict(
        os.environ,
        LATCHKEY_DATABASE_URL=database_url,
        LATCHKEY_MASTER_KEY=MASTER_KEY,
        LATCHKEY_API_KEY=API_KEY,
        LATCHKEY_LOG="info",
    )
    instances = [Instance(slot, args.binary, work, env) for slot in range(INSTANCES)]
    for instance in instances:
        connectors = os.path.join(instance.dir, "connectors")
        os.makedirs(connectors)
        with open(os.path.join(connectors, "rotating.yaml"), "w") as f:
            f.write(
                f"id: rotating\nname: Rotating\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n"
                f"    authorize_url: {uri}/authorize\n    token_url: {uri}/token/{instance.slot}\n"
            )
    try:
        for instance in instances:
            instance.start()
        run(args, provider, instances, psql, schema, chaos)
    finally:
        for instance in instances:
            if instance.alive():
                instance.kill()
        mock.shutdown()
        psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def run(args, provider, instances, psql, schema, chaos):
    lock = threading.Lock()

    def some_port():
        with lock:
            alive = [i.port for i in instances if i.alive()]
        return random.choice(alive)

    status, body = call(
        some_port(), "POST", "/v1/integrations",
        {"id": "app", "connector": "rotating", "client_id": "cid", "client_secret": "csecret"},
    )
    assert status in (200, 201), (status, body)

    families = iter(range(1_000_000))
    # slot -> (connection id, family); a reconnect keeps the id and gives a new family.
    slots = {}
    reconnects = [0]
    flagged = []  # needs_reauth seen during the run: (connection id, family)

    def connect(slot):
        """A new connection with id `c<slot>` and a new token family."""
        family = f"f{next(families)}"
        cid = f"c{slot}"
        retried = False
        while True:
            try:
                status, body = call(
                    some_port(), "POST", "/v1/connections?test=false",
                    {
                        "id": cid, "connector": "rotating", "integration": "app",
                        "credentials": {"access_token": f"at.{family}.0", "refresh_token": f"rt.{family}.0"},
                        "expires_in": args.expires_in,
                    },
                )
            except UNANSWERED:
                retried = True
                continue  # the instance was killed under the call: ask another
            # 409 after a retry: the killed instance had stored it.
            assert status == 201 or (retried and status == 409), (status, body)
            slots[slot] = (cid, family)
            return

    for slot in range(args.connections):
        connect(slot)

    stop = threading.Event()
    outcomes = {}

    def traffic():
        while not stop.is_set():
            with lock:
                cid = slots[random.randrange(args.connections)][0]
            try:
                status, _ = call(some_port(), "GET", f"/v1/proxy/{cid}/me", timeout=5)
                key = str(status)
            except UNANSWERED:
                key = "no answer"
            with lock:
                outcomes[key] = outcomes.get(key, 0) + 1

    def reconnect():
        """What users do once told to connect again: the app deletes the connection and makes
        it again under the same id, with a new token family. (A deletion waits for a refresh
        of the connection in flight, or a lease a killed instance left, to end.)"""
        while not stop.is_set():
            for slot in range(args.connections):
                cid, family = slots[slot]
                try:
                    status, body = call(some_port(), "GET", f"/v1/connections/{cid}", timeout=5)
                    if status != 200 or json.loads(body).get("status") != "needs_reauth":
                        continue
                    if (cid, family) not in flagged:
                        flagged.append((cid, family))
                    status, _ = call(some_port(), "DELETE", f"/v1/connections/{cid}", timeout=150)
                except UNANSWERED:
                    continue
                if status in (204, 404):
                    connect(slot)
                    reconnects[0] += 1
            stop.wait(1)

    workers = [threading.Thread(target=traffic) for _ in range(4)] + [threading.Thread(target=reconnect)]
    for worker in workers:
        worker.start()

    started = time.monotonic()
    kills = 0
    while provider.rotations < args.refreshes:
        time.sleep(chaos.uniform(0.5, 3.0))
        victim = chaos.choice(instances)
        with lock:
            victim.kill()
        kills += 1
        time.sleep(chaos.uniform(0.2, 2.0))
        victim.start()
        print(f"\rrotations {provider.rotations}, kills {kills}, reconnects {reconnects[0]}", end="", flush=True)
    print()
    stop.set()
    for worker in workers:
        worker.join()

    # The end: tokens from now on live an hour, so once every connection has been refreshed
    # again (a lapsed lease taken over, a short token renewed), nothing changes while it is
    # classified.
    provider.expires_in = 3600
    settle_started = time.monotonic()
    while True:
        leases = int(psql(f"SELECT count(*) FROM {schema}.locks WHERE name LIKE 'refresh:%'"))
        pending = 0
        for cid, family in slots.values():
            status, body = call(some_port(), "GET", f"/v1/connections/{cid}")
            if json.loads(body).get("status") != "needs_reauth" and not provider.newest_is_long(family):
                pending += 1
        if leases == 0 and pending == 0:
            break
        if time.monotonic() - settle_started > SETTLE_LIMIT:
            print(f"not settled after {SETTLE_LIMIT} s: {leases} leases held, {pending} connections not renewed")
            break
        time.sleep(1)

    def explained(family):
        """The family was revoked because an instance died between sending a refresh token
        and storing the provider's answer, then the token went out again."""
        reuse = provider.revoked.get(family)
        if reuse is None:
            return False
        rotation = provider.rotations_log.get((family, reuse["token"]))
        if rotation is None:
            return False
        killed = instances[rotation["slot"]].kills
        return any(rotation["asked"] <= k <= reuse["at"] for k in killed)

    def killed_after_the_answer(family):
        """Of the explained: the kill came after the provider had rotated the token (the
        answer was on its way or read), not while the provider was still working on it."""
        reuse = provider.revoked[family]
        rotation = provider.rotations_log[(family, reuse["token"])]
        killed = instances[rotation["slot"]].kills
        return any(rotation["rotated"] <= k <= reuse["at"] for k in killed)

    counts = {"works": 0, "needs_reauth_explained": 0, "needs_reauth_unexplained": 0,
              "silently_broken": 0, "other": 0}
    for cid, family in flagged:
        counts["needs_reauth_explained" if explained(family) else "needs_reauth_unexplained"] += 1
    for cid, family in slots.values():
        port = some_port()
        status, body = call(port, "GET", f"/v1/connections/{cid}")
        state = json.loads(body).get("status")
        if state == "needs_reauth":
            if (cid, family) not in flagged:  # else counted above
                counts["needs_reauth_explained" if explained(family) else "needs_reauth_unexplained"] += 1
            if not explained(family):
                print(f"{cid}: needs_reauth without a kill to explain it")
            continue
        if state != "ok":
            counts["other"] += 1
            print(f"{cid}: status {state}")
            continue
        status, body = call(port, "GET", f"/v1/connections/{cid}/token")
        access = json.loads(body).get("access_token") if status == 200 else None
        # The newest token of this connection's own family, not of one deleted before it.
        newest = (access or "").startswith(f"at.{family}.") and provider.accepts(access)
        rotations_before = provider.rotations
        refreshed, _ = call(port, "POST", f"/v1/connections/{cid}/refresh", {})
        proxied, _ = call(port, "GET", f"/v1/proxy/{cid}/me")
        if newest and refreshed == 200 and provider.rotations > rotations_before and proxied == 200:
            counts["works"] += 1
        else:
            counts["silently_broken"] += 1
            print(f"silently broken: {cid} reads ok; newest token {newest}, refresh {refreshed}, proxy {proxied}")

    unexplained_reuses = sum(1 for family in provider.revoked if not explained(family))
    after_answer = sum(1 for family in provider.revoked if explained(family) and killed_after_the_answer(family))
    print(
        json.dumps(
            {
                "instances": INSTANCES,
                "connections": args.connections,
                "connections_made": args.connections + reconnects[0],
                "refreshes_rotated": provider.rotations,
                "sigkills": kills,
                "families_revoked": len(provider.revoked),
                "families_revoked_without_a_kill": unexplained_reuses,
                "families_revoked_kill_after_the_rotation": after_answer,
                "proxied": dict(sorted(outcomes.items())),
                **counts,
                "seconds": round(time.monotonic() - started),
            }
        )
    )
    sys.exit(1 if counts["silently_broken"] or counts["needs_reauth_unexplained"] or counts["other"] else 0)


if __name__ == "__main__":
    main()
