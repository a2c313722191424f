"""PyJWT as an independent JWT implementation for Latchkey's tests.

`keys`: prints fresh keys as JSON (RSA, EC P-256, Ed25519: private PKCS#8 PEM and public PEM).
`verify`: reads [{token, algorithm, key, audience?}] on stdin, prints [{header, claims} | {error}].
"""
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def pem_pair(key):
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return {"private": private, "public": public}


if sys.argv[1] == "keys":
    json.dump({
        "rsa": pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ec": pem_pair(ec.generate_private_key(ec.SECP256R1())),
        "ed": pem_pair(ed25519.Ed25519PrivateKey.generate()),
    }, sys.stdout)
else:
    out = []
    for case in json.load(sys.stdin):
        try:
            claims = jwt.decode(case["token"], case["key"], algorithms=[case["algorithm"]],
                                audience=case.get("audience"), options={"require": ["exp", "iat"]})
            out.append({"header": jwt.get_unverified_header(case["token"]), "claims": claims})
        except Exception as e:  # noqa: BLE001 - reported back to the test
            out.append({"error": type(e).__name__})
    json.dump(out, sys.stdout)
