"""A webhook receiver that verifies every delivery with the `standardwebhooks` library (PyPI),
as an app would, and records what it saw.

    standard_webhooks_receiver.py NAME=SECRET ...

Each NAME=SECRET is one holder of a secret: a `whsec_...` secret is passed to
`standardwebhooks.Webhook` as the string it is; `raw:TEXT` passes TEXT's UTF-8 bytes (how a
receiver uses a secret that is not `whsec_`). Every POST is verified with each holder.

    POST /...          answers 204; `/fail-N` answers 503 to the first N attempts of each
                       webhook-id, then 204; `/gone` answers 410
    GET  /log          the JSON list of what came: path, webhook-id, the holders that verified
                       it, the event type
    PUT  /holders      replaces the holders (a JSON object NAME -> SECRET)

Prints `ready PORT` once it listens on 127.0.0.1 (a free port).
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

lock = threading.Lock()
log = []
attempts = {}
holders = {}


def set_holders(pairs):
    made = {}
    for name, secret in pairs.items():
        made[name] = Webhook(secret[4:].encode() if secret.startswith("raw:") else secret)
    with lock:
        holders.clear()
        holders.update(made)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def body(self):
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def answer(self, status, payload=None):
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            self.answer(200, list(log))

    def do_PUT(self):
        set_holders(json.loads(self.body()))
        self.answer(204)

    def do_POST(self):
        body = self.body()
        headers = dict(self.headers.items())
        accepted, event = [], None
        with lock:
            current = dict(holders)
        for name, hook in sorted(current.items()):
            try:
                event = hook.verify(body, headers)
                accepted.append(name)
            except Exception:
                pass
        msg_id = self.headers.get("webhook-id")
        with lock:
            attempts[msg_id] = attempts.get(msg_id, 0) + 1
            seen = attempts[msg_id]
            log.append({
                "path": self.path,
                "id": msg_id,
                "accepted": accepted,
                "type": event and event.get("type"),
                "signatures": len(self.headers.get("webhook-signature", "").split()),
            })
        if self.path == "/gone":
            return self.answer(410)
        if self.path.startswith("/fail-") and seen <= int(self.path[len("/fail-"):]):
            return self.answer(503)
        self.answer(204 if accepted else 401)


def main():
    set_holders(dict(arg.split("=", 1) for arg in sys.argv[1:]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
