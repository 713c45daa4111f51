#!/usr/bin/env python3
"""Independent check of the control-command test vectors (docs/CONTROL.md).

Written from the specification, sharing no code with the Rust implementation: it canonicalises
each vector's command with its own RFC 8785 (JCS) routine, prefixes the domain string, signs with
the RFC 8032 seed through `cryptography`, and requires the canonical bytes and the (deterministic)
Ed25519 signature to be byte-identical to the vector. It also verifies the signature, checks that
a tampered command does not verify, and that `signed` is `unsigned` plus `signature`.

Usage: control_independent.py VECTOR_DIR          check every *.json vector (exit 1 on mismatch)
       control_independent.py --write VECTOR_DIR  fill in canonical_hex, signature_b64, signed
"""

import base64
import binascii
import json
import pathlib
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

DOMAIN = b"vettid-control-v1\n"
MAX_SAFE_INTEGER = 2**53 - 1
SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def jcs(value):
    """RFC 8785 for the JSON subset control commands use (integers only)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer out of range: {value}")
        return str(value)
    if isinstance(value, float):
        raise ValueError("floats are not allowed in control commands")
    if isinstance(value, str):
        return jcs_string(value)
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        # RFC 8785 §3.2.3: sort by UTF-16 code units; big-endian UTF-16 bytes compare the same way.
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(jcs_string(k) + ":" + jcs(value[k]) for k in keys) + "}"
    raise TypeError(f"not JSON: {type(value)}")


def jcs_string(s):
    """ECMAScript JSON.stringify escaping: only quote, backslash and U+0000..U+001F."""
    out = ['"']
    for ch in s:
        if ch in SHORT_ESCAPES:
            out.append(SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"duplicate key in {keys}")
    return dict(pairs)


def signing_bytes(unsigned):
    return DOMAIN + jcs(unsigned).encode("utf-8")


def check(path, vector):
    failures = []
    key = Ed25519PrivateKey.from_private_bytes(binascii.unhexlify(vector["seed_hex"]))
    public = key.public_key()
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if base64.b64encode(raw_public).decode() != vector["public_key_b64"]:
        failures.append("public key differs from the seed's")
    if vector["domain"].encode() != DOMAIN:
        failures.append("domain string differs")
    message = signing_bytes(vector["unsigned"])
    if message.hex() != vector["canonical_hex"]:
        failures.append(f"canonical bytes differ:\n  mine:   {message!r}\n  vector: {binascii.unhexlify(vector['canonical_hex'])!r}")
    signature = key.sign(message)
    if base64.b64encode(signature).decode() != vector["signature_b64"]:
        failures.append("signature differs")
    try:
        public.verify(base64.b64decode(vector["signature_b64"]), binascii.unhexlify(vector["canonical_hex"]))
    except InvalidSignature:
        failures.append("vector signature does not verify over the vector's canonical bytes")
    expected_signed = dict(vector["unsigned"], signature=vector["signature_b64"])
    if vector["signed"] != expected_signed:
        failures.append("`signed` is not `unsigned` plus `signature`")
    tampered = json.loads(json.dumps(vector["unsigned"]))
    tampered["params"]["extra"] = "x"
    try:
        public.verify(signature, signing_bytes(tampered))
        failures.append("a tampered command verified")
    except InvalidSignature:
        pass
    for f in failures:
        print(f"FAIL {path.name}: {f}", file=sys.stderr)
    return not failures


def fill(vector):
    key = Ed25519PrivateKey.from_private_bytes(binascii.unhexlify(vector["seed_hex"]))
    raw_public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    vector["public_key_b64"] = base64.b64encode(raw_public).decode()
    message = signing_bytes(vector["unsigned"])
    vector["canonical_hex"] = message.hex()
    vector["signature_b64"] = base64.b64encode(key.sign(message)).decode()
    vector["signed"] = dict(vector["unsigned"], signature=vector["signature_b64"])


def main(argv):
    write = "--write" in argv
    dirs = [a for a in argv if a != "--write"]
    if len(dirs) != 1:
        print(__doc__, file=sys.stderr)
        return 64
    paths = sorted(pathlib.Path(dirs[0]).glob("*.json"))
    if not paths:
        print(f"FAIL: no vectors in {dirs[0]}", file=sys.stderr)
        return 1
    ok = True
    for path in paths:
        vector = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)
        if write:
            fill(vector)
            path.write_text(json.dumps(vector, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        ok &= check(path, vector)
    print(f"{'ok' if ok else 'FAILED'}: {len(paths)} control vectors checked independently")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
