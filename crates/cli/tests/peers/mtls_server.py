"""An OAuth2 token endpoint and API that require a client certificate (mutual TLS, RFC 8705):
`tls_client_auth` client authentication and certificate-bound access tokens.

Usage: mtls_server.py DIR
Writes DIR/ca.pem (the CA that signed the server and the trusted client), DIR/client.pem (the
client's certificate and key), DIR/rogue.pem (a client certificate from another CA), prints
"ready PORT", then serves HTTPS on 127.0.0.1:PORT (a free port the system picked):
  POST /token   client_credentials with client_id=cid -> a token bound to the certificate
  GET  /api/me  the token, over a connection with the same certificate -> {"cn": ...}
"""

import datetime
import hashlib
import ipaddress
import json
import ssl
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

out = Path(sys.argv[1])
now = datetime.datetime.now(datetime.timezone.utc)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(subject, key, issuer, issuer_key, ca=False, server=False):
    builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert, key=None):
    text = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        text += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    return text


ca_key = ec.generate_private_key(ec.SECP256R1())
ca = issue("Test CA", ca_key, "Test CA", ca_key, ca=True)
server_key = ec.generate_private_key(ec.SECP256R1())
server_cert = issue("127.0.0.1", server_key, "Test CA", ca_key, server=True)
client_key = ec.generate_private_key(ec.SECP256R1())
client_cert = issue("latchkey-client", client_key, "Test CA", ca_key)
rogue_ca_key = ec.generate_private_key(ec.SECP256R1())
rogue_key = ec.generate_private_key(ec.SECP256R1())
rogue_cert = issue("rogue", rogue_key, "Rogue CA", rogue_ca_key)

(out / "ca.pem").write_bytes(pem(ca))
(out / "client.pem").write_bytes(pem(client_cert, client_key))
(out / "rogue.pem").write_bytes(pem(rogue_cert, rogue_key))
(out / "server.pem").write_bytes(pem(server_cert, server_key))

tokens = {}


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def thumbprint(self):
        der = self.connection.getpeercert(binary_form=True)
        return hashlib.sha256(der).hexdigest() if der else None

    def do_POST(self):
        form = dict(urllib.parse.parse_qsl(
            self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()))
        if self.path != "/token" or form.get("grant_type") != "client_credentials":
            return self.reply(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != "cid" or "client_secret" in form:
            return self.reply(401, {"error": "invalid_client"})
        token = f"bound-{len(tokens) + 1}"
        tokens[token] = self.thumbprint()
        self.reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def do_GET(self):
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.path != "/api/me" or token not in tokens:
            return self.reply(401, {"error": "invalid_token"})
        if tokens[token] != self.thumbprint():
            return self.reply(401, {"error": "invalid_token", "error_description": "not bound"})
        cn = dict(x[0] for x in self.connection.getpeercert()["subject"])["commonName"]
        self.reply(200, {"cn": cn})

    def log_message(self, *args):
        pass


context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(out / "server.pem")
context.load_verify_locations(out / "ca.pem")
context.verify_mode = ssl.CERT_REQUIRED
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(f"ready {server.server_address[1]}", flush=True)
server.serve_forever()
