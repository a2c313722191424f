"""An OAuth 1.0a provider for the three-legged flow (RFC 5849 §2) built on oauthlib's
RequestTokenEndpoint, AccessTokenEndpoint and ResourceEndpoint, with HMAC-SHA1 signatures.

Usage: oauth1_flow_provider.py   (listens on a free port; prints "ready PORT")
  POST /request_token  -> temporary credentials (oauth_callback required)
  GET  /authorize      ?oauth_token=T -> 302 to the callback with oauth_token and oauth_verifier
                          (the user "approves" at once; ?deny=1 redirects with no verifier)
  POST /access_token   -> token credentials (+ user_id, screen_name)
  GET  /api/me         -> 200 {"user": ...} for a valid signed request with the access token
"""
import json
import secrets
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from oauthlib.oauth1 import (AccessTokenEndpoint, RequestTokenEndpoint, RequestValidator,
                             ResourceEndpoint)

CONSUMER_KEY = "flow-consumer-key-0001"
CONSUMER_SECRET = "flow-consumer-secret-0001"

request_tokens = {}   # token -> {"secret", "callback", "verifier"}
access_tokens = {}    # token -> secret
issued = {"request": 0, "access": 0}


class Validator(RequestValidator):
    enforce_ssl = False
    seen = set()

    @property
    def safe_characters(self): return set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
    @property
    def dummy_client(self): return "dummy-client-key-000000"
    @property
    def dummy_request_token(self): return "dummy-request-token-0000"
    @property
    def dummy_access_token(self): return "dummy-access-token-00000"

    def check_client_key(self, key): return True
    def check_request_token(self, token): return True
    def check_access_token(self, token): return True
    def check_nonce(self, nonce): return 8 <= len(nonce) <= 64
    def check_verifier(self, verifier): return True
    def check_realms(self, realms): return True
    def validate_client_key(self, key, request): return key == CONSUMER_KEY
    def get_client_secret(self, key, request): return CONSUMER_SECRET
    def validate_requested_realms(self, key, realms, request): return True
    def get_default_realms(self, key, request): return []
    def validate_redirect_uri(self, key, redirect_uri, request):
        return redirect_uri.startswith("http://127.0.0.1:")
    def get_realms(self, token, request): return []
    def validate_realms(self, *args, **kwargs): return True

    def save_request_token(self, token, request):
        issued["request"] += 1
        request_tokens[token["oauth_token"]] = {
            "secret": token["oauth_token_secret"], "callback": request.redirect_uri, "verifier": None}

    def validate_request_token(self, key, token, request): return token in request_tokens
    def get_request_token_secret(self, key, token, request):
        return request_tokens.get(token, {}).get("secret", "dummy")
    def validate_verifier(self, key, token, verifier, request):
        entry = request_tokens.get(token)
        return bool(entry and entry["verifier"] and secrets.compare_digest(entry["verifier"], verifier))
    def invalidate_request_token(self, key, token, request): request_tokens.pop(token, None)

    def save_access_token(self, token, request):
        issued["access"] += 1
        access_tokens[token["oauth_token"]] = token["oauth_token_secret"]
    def validate_access_token(self, key, token, request): return token in access_tokens
    def get_access_token_secret(self, key, token, request): return access_tokens.get(token, "dummy")

    def validate_timestamp_and_nonce(self, key, timestamp, nonce, request, request_token=None,
                                     access_token=None):
        if (key, nonce, timestamp) in self.seen:
            return False
        self.seen.add((key, nonce, timestamp))
        return True


validator = Validator()
request_endpoint = RequestTokenEndpoint(validator)
access_endpoint = AccessTokenEndpoint(validator)
resource_endpoint = ResourceEndpoint(validator)


class AccessWithExtras(AccessTokenEndpoint):
    def create_access_token(self, request, credentials):
        body = super().create_access_token(request, credentials)
        return body + "&user_id=42&screen_name=ada"


access_endpoint = AccessWithExtras(validator)


class Handler(BaseHTTPRequestHandler):
    def send(self, status, body, headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def parts(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        uri = "http://%s%s" % (self.headers["Host"], self.path)
        return uri, body, {k: v for k, v in self.headers.items()}

    def do_POST(self):
        uri, body, headers = self.parts()
        path = urllib.parse.urlsplit(self.path).path
        if path == "/request_token":
            h, b, s = request_endpoint.create_request_token_response(uri, "POST", body, headers)
        elif path == "/access_token":
            h, b, s = access_endpoint.create_access_token_response(uri, "POST", body, headers)
        else:
            return self.send(404, "")
        self.send(s, b or "", list(h.items()))

    def do_GET(self):
        uri, body, headers = self.parts()
        split = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(split.query))
        if split.path == "/authorize":
            entry = request_tokens.get(query.get("oauth_token", ""))
            if entry is None:
                return self.send(400, "unknown request token")
            params = {"oauth_token": query["oauth_token"]}
            if "deny" not in query:
                entry["verifier"] = secrets.token_urlsafe(16)
                params["oauth_verifier"] = entry["verifier"]
            location = entry["callback"] + ("&" if "?" in entry["callback"] else "?") + \
                urllib.parse.urlencode(params)
            return self.send(302, "", [("Location", location)])
        if split.path == "/stats":
            return self.send(200, json.dumps(issued), [("Content-Type", "application/json")])
        valid, request = resource_endpoint.validate_protected_resource_request(
            uri, "GET", body, headers)
        if split.path == "/api/me" and valid:
            return self.send(200, json.dumps({"user": "ada", "token": request.resource_owner_key}),
                             [("Content-Type", "application/json")])
        self.send(401, json.dumps({"valid": False}), [("Content-Type", "application/json")])

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"ready {server.server_address[1]}", flush=True)
server.serve_forever()
