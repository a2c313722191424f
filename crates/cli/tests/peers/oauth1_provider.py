"""An OAuth 1.0a protected resource built on oauthlib's SignatureOnlyEndpoint.

Verifies the signature of every request (HMAC-SHA1, HMAC-SHA256, RSA-SHA1, PLAINTEXT; header or
query; query and form parameters) and answers 200 {"valid": true, ...} or 401.
Usage: oauth1_provider.py RSA_PRIVATE_KEY_OUT   (listens on a free port; prints "ready PORT")
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint
from oauthlib.oauth1.rfc5849 import SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256, SIGNATURE_PLAINTEXT, SIGNATURE_RSA_SHA1

CONSUMER_KEY = "latchkey-consumer-key-0001"
CONSUMER_SECRET = "consumer-secret-äöü"
TOKEN = "latchkey-access-token-0001"
TOKEN_SECRET = "token-secret-0001"

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
with open(sys.argv[1], "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


class Validator(RequestValidator):
    enforce_ssl = False
    allowed_signature_methods = (SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256, SIGNATURE_RSA_SHA1,
                                 SIGNATURE_PLAINTEXT)
    seen = set()

    def check_client_key(self, key): return True
    def check_access_token(self, token): return True
    def check_nonce(self, nonce): return 8 <= len(nonce) <= 64
    def validate_client_key(self, key, request): return key == CONSUMER_KEY
    def get_client_secret(self, key, request): return CONSUMER_SECRET
    def get_rsa_key(self, key, request): return PUBLIC_PEM
    def validate_access_token(self, key, token, request): return token in (TOKEN, None)
    def get_access_token_secret(self, key, token, request): return TOKEN_SECRET
    def validate_realms(self, *args, **kwargs): return True
    @property
    def dummy_client(self): return "dummy-client-key-000000"
    @property
    def dummy_access_token(self): return "dummy-access-token-00000"

    def validate_timestamp_and_nonce(self, key, timestamp, nonce, request, request_token=None,
                                     access_token=None):
        if (key, nonce, timestamp) in self.seen:
            return False
        self.seen.add((key, nonce, timestamp))
        return True


endpoint = SignatureOnlyEndpoint(Validator())


class Handler(BaseHTTPRequestHandler):
    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        uri = "http://%s%s" % (self.headers["Host"], self.path)
        headers = {k: v for k, v in self.headers.items()}
        valid, request = endpoint.validate_request(uri, self.command, body, headers)
        payload = json.dumps({"valid": valid, "method": request.signature_method,
                              "params": dict(request.params) if valid else None},
                             ensure_ascii=False).encode()
        self.send_response(200 if valid else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"ready {server.server_address[1]}", flush=True)
server.serve_forever()
