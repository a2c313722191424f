"""A token endpoint for the JWT bearer grant (RFC 7523 §2.1), verifying assertions with PyJWT, and
an API that accepts the tokens it issued.

Usage: jwt_bearer_server.py KEY_DIR [SKEW_SECONDS]
With SKEW_SECONDS the server's clock runs that far ahead (its checks and its Date header).
Writes KEY_DIR/service.pem (the service account's private key) and KEY_DIR/other.pem (a key the
server does not trust), listens on a free port, prints "ready PORT", then serves:
  POST /token       grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT
                    -> {"access_token": "at-N", "expires_in": 3600} or 400 invalid_grant
  GET  /api/whoami  Authorization: Bearer at-N -> {"iss": ..., "sub": ..., "scope": ..., "kid": ...}
  GET  /stats       -> {"issued": N}
"""

import json
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

key_dir = Path(sys.argv[1])
skew = int(sys.argv[2]) if len(sys.argv) > 2 else 0
# Bound first (port 0: the system picks a free one), so the audience can name the port.
server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
port = server.server_address[1]


def new_key(path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return key.public_key()


trusted = new_key(key_dir / "service.pem")
new_key(key_dir / "other.pem")
audience = f"http://127.0.0.1:{port}/token"
issued = {}
seen_jti = set()


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        if self.path != "/token":
            return self.reply(404, {"error": "not_found"})
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self.reply(400, {"error": "unsupported_grant_type"})
        try:
            header = jwt.get_unverified_header(form.get("assertion", ""))
            claims = jwt.decode(
                form["assertion"], trusted, algorithms=["RS256"], audience=audience,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_exp": False})
            if claims["exp"] < time.time() + skew:
                raise jwt.ExpiredSignatureError("Signature has expired")
        except Exception as error:  # any verification failure is the client's fault
            return self.reply(400, {"error": "invalid_grant", "error_description": str(error)})
        if claims["exp"] - claims["iat"] > 3600 or claims["iat"] > time.time() + skew + 60:
            return self.reply(400, {"error": "invalid_grant", "error_description": "bad lifetime"})
        if claims["jti"] in seen_jti:
            return self.reply(400, {"error": "invalid_grant", "error_description": "jti replayed"})
        seen_jti.add(claims["jti"])
        token = f"at-{len(issued) + 1}"
        issued[token] = {**claims, "kid": header.get("kid")}
        self.reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def do_GET(self):
        if self.path == "/stats":
            return self.reply(200, {"issued": len(issued)})
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.path == "/api/whoami" and token in issued:
            claims = issued[token]
            return self.reply(200, {k: claims.get(k) for k in ("iss", "sub", "scope", "kid")})
        self.reply(401, {"error": "invalid_token"})

    def date_time_string(self, timestamp=None):
        return super().date_time_string(time.time() + skew)

    def log_message(self, *args):
        pass


server.RequestHandlerClass = Handler
print(f"ready {port}", flush=True)
server.serve_forever()
