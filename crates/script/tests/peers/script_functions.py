"""Python's standard library and `cryptography` as an independent implementation of the
functions connector scripts call (`btoa`/`atob`, `cyclr_sign`), for tests/python_interop.rs.

Reads a JSON list of cases on stdin and prints a JSON list of results, one per case, in order:

- {"kind": "btoa", "text", "codec", "errors", "rust"}: `text` encoded with the Python codec and
  error handler; returns {"base64": base64 of those bytes, "decoded": those bytes decoded again
  with the codec, "rust_decoded": the bytes of `rust` (base64, what the script's btoa returned)
  decoded with the codec, strictly (null and "rust_error" if they do not decode)}.
- {"kind": "decode", "hex", "codec", "errors"}: the bytes given in hex; returns {"base64",
  "decoded": the bytes decoded with the codec and error handler}.
- {"kind": "hmac", "digest", "key", "value"}: HMAC over the UTF-8 bytes; returns {"base64", "hex"}.
- {"kind": "rsa", "digest", "pem", "value", "signature", "encoding"}: verifies `signature` (in
  "base64" or "hex") over the UTF-8 bytes of `value` with PKCS#1 v1.5 and the public half of the
  PEM private key (PKCS#8 or PKCS#1); returns {"valid", "tampered_valid": the same signature checked
  against `value` + "!" (must be false), "own": cryptography's own signature in the same
  encoding (lower-case hex or base64), which must be identical: PKCS#1 v1.5 is deterministic}.

Needs the `cryptography` package (`scripts/test --prepare` installs it); exits with status 3 and a message on stderr when it is missing.
"""
import base64
import binascii
import codecs
import hashlib
import hmac
import json
import sys
import unicodedata

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
except ImportError as e:
    sys.stderr.write(f"the Python package 'cryptography' is missing ({e}); "
                     "run scripts/test --prepare, which installs it into .venv-test/\n")
    sys.exit(3)


def latin1_best_fit(error):
    """ISO-8859-1 as charset.rs documents it: an unencodable character becomes its canonical
    decomposition's base letter when that is in Latin-1 (ĕ -> e), otherwise '?'."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    out = []
    for c in error.object[error.start:error.end]:
        base = unicodedata.normalize("NFD", c)[0]
        out.append(base if base != c and ord(base) <= 0xFF else "?")
    return "".join(out), error.end


def question_mark(error):
    """A '?' for each byte that cannot be decoded (charset.rs's ASCII decoder)."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return "?" * (error.end - error.start), error.end


codecs.register_error("latchkey_latin1_best_fit", latin1_best_fit)
codecs.register_error("latchkey_question_mark", question_mark)

DIGESTS = {
    "sha1": (hashlib.sha1, hashes.SHA1),
    "sha224": (hashlib.sha224, hashes.SHA224),
    "sha256": (hashlib.sha256, hashes.SHA256),
    "sha384": (hashlib.sha384, hashes.SHA384),
    "sha512": (hashlib.sha512, hashes.SHA512),
}


def b64(data):
    return base64.b64encode(data).decode("ascii")


def btoa(case):
    data = case["text"].encode(case["codec"], case["errors"])
    out = {"base64": b64(data), "decoded": data.decode(case["codec"])}
    try:
        out["rust_decoded"] = base64.b64decode(case["rust"], validate=True).decode(case["codec"])
    except (binascii.Error, UnicodeDecodeError) as e:
        out["rust_decoded"] = None
        out["rust_error"] = str(e)
    return out


def decode(case):
    data = bytes.fromhex(case["hex"])
    return {"base64": b64(data), "decoded": data.decode(case["codec"], case["errors"])}


def mac(case):
    digest = hmac.new(case["key"].encode("utf-8"), case["value"].encode("utf-8"),
                      DIGESTS[case["digest"]][0]).digest()
    return {"base64": b64(digest), "hex": digest.hex()}


def rsa(case):
    private_key = serialization.load_pem_private_key(case["pem"].encode("ascii"), password=None)
    public_key = private_key.public_key()
    algorithm = DIGESTS[case["digest"]][1]
    if case["encoding"] == "hex":
        signature = bytes.fromhex(case["signature"])
    else:
        signature = base64.b64decode(case["signature"], validate=True)

    def verifies(value):
        try:
            public_key.verify(signature, value.encode("utf-8"), padding.PKCS1v15(), algorithm())
            return True
        except InvalidSignature:
            return False

    own = private_key.sign(case["value"].encode("utf-8"), padding.PKCS1v15(), algorithm())
    return {"valid": verifies(case["value"]), "tampered_valid": verifies(case["value"] + "!"),
            "own": own.hex() if case["encoding"] == "hex" else b64(own)}


KINDS = {"btoa": btoa, "decode": decode, "hmac": mac, "rsa": rsa}

cases = json.loads(sys.stdin.buffer.read().decode("utf-8"))
json.dump([KINDS[case["kind"]](case) for case in cases], sys.stdout)
