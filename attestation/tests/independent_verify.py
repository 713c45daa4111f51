#!/usr/bin/env python3
"""Independent verifier for VettID signed PCR manifests (v1 app procedure), for cross-checking the Rust crate.

Usage: independent_verify.py MANIFEST_FILE PUBKEY_HEX [--at RFC3339] [--pure]

PUBKEY_HEX is a P-256 public key in hex: an uncompressed SEC1 point (65 bytes) or its DER SPKI (91 bytes).
Procedure: strict JSON parse (no duplicate keys, integers only), remove "signature", RFC 8785 canonical JSON,
ECDSA P-256 / SHA-256 verification of the base64 DER signature, manifest rules, then print the ids of the sets
valid at --at (default: the manifest timestamp) as a JSON list.

Uses the `cryptography` package when importable, else (or with --pure) a pure-Python ECDSA verifier.
Exit codes: 0 verified, 1 rejected, 2 usage error.
"""

import base64
import hashlib
import json
import re
import sys
from datetime import datetime

MAX_SAFE_INTEGER = 2**53 - 1


class Reject(Exception):
    pass


# ---------- strict JSON and RFC 8785 ----------

def _pairs(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise Reject(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_float(text):
    raise Reject(f"non-integer number {text}")


def _int(text):
    if text == "-0":  # the Rust parser reads -0 as a float; refuse it here too so both agree
        raise Reject("non-integer number -0")
    return int(text)


def parse_strict(data):
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_pairs, parse_float=_no_float,
                          parse_int=_int, parse_constant=_no_float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Reject(f"invalid JSON: {exc}")


def jcs_string(s):
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20:
            out.append("\\u%04x" % code)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def jcs(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise Reject("integer out of range")
        return str(value)
    if isinstance(value, str):
        return jcs_string(value)
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(jcs_string(k) + ":" + jcs(value[k]) for k in keys) + "}"
    raise Reject(f"unsupported JSON value {value!r}")


# ---------- P-256 ECDSA ----------

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
     0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")


def on_curve(pt):
    x, y = pt
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def point_add(p1, p2):
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % P == 0:
        return None
    if p1 == p2:
        lam = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return (x3, (lam * (x1 - x3) - y1) % P)


def scalar_mult(k, pt):
    acc = None
    while k:
        if k & 1:
            acc = point_add(acc, pt)
        pt = point_add(pt, pt)
        k >>= 1
    return acc


def parse_der_signature(sig):
    """Strict DER: SEQUENCE { INTEGER r, INTEGER s }, minimal lengths, positive integers."""
    def integer(buf, i):
        if buf[i] != 0x02:
            raise Reject("signature: expected INTEGER")
        length = buf[i + 1]
        if length == 0 or length > 33 or i + 2 + length > len(buf):
            raise Reject("signature: bad INTEGER length")
        body = buf[i + 2:i + 2 + length]
        if body[0] & 0x80 or (length > 1 and body[0] == 0 and not body[1] & 0x80):
            raise Reject("signature: non-minimal or negative INTEGER")
        return int.from_bytes(body, "big"), i + 2 + length
    if len(sig) < 8 or sig[0] != 0x30 or sig[1] != len(sig) - 2:
        raise Reject("signature: not a DER SEQUENCE")
    r, i = integer(sig, 2)
    s, i = integer(sig, i)
    if i != len(sig):
        raise Reject("signature: trailing bytes")
    return r, s


def public_point(key):
    if key.startswith(SPKI_PREFIX):
        key = key[len(SPKI_PREFIX):]
    if len(key) != 65 or key[0] != 4:
        raise Reject("public key: expected uncompressed P-256 point or its SPKI")
    pt = (int.from_bytes(key[1:33], "big"), int.from_bytes(key[33:], "big"))
    if not on_curve(pt):
        raise Reject("public key: not on P-256")
    return pt


def verify_pure(key, message, der_sig):
    q = public_point(key)
    r, s = parse_der_signature(der_sig)
    if not (1 <= r < N and 1 <= s < N):
        raise Reject("signature: r or s out of range")
    e = int.from_bytes(hashlib.sha256(message).digest(), "big")
    w = pow(s, -1, N)
    x = point_add(scalar_mult(e * w % N, G), scalar_mult(r * w % N, q))
    if x is None or x[0] % N != r:
        raise Reject("signature does not verify")


def verify_cryptography(key, message, der_sig):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    parse_der_signature(der_sig)  # same strictness as the pure path
    if key.startswith(SPKI_PREFIX):
        public = serialization.load_der_public_key(key)
    else:
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
    try:
        public.verify(der_sig, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Reject("signature does not verify")


# ---------- manifest rules ----------

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def rfc3339_ms(text, field):
    if not isinstance(text, str) or not RFC3339.match(text):
        raise Reject(f"{field}: not RFC 3339")
    head, frac, zone = re.match(r"^(.{19})(\.\d+)?(.*)$", text).groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    when = datetime.fromisoformat(head.replace("t", "T") + zone)
    millis = int((frac or ".0")[1:4].ljust(3, "0"))
    return int(when.timestamp()) * 1000 + millis


def hex_pcr(text, field):
    if not isinstance(text, str):
        raise Reject(f"{field}: not a string")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise Reject(f"{field}: not hex")
    if len(raw) not in (32, 48, 64) or len(text) != 2 * len(raw):
        raise Reject(f"{field}: bad length")
    return raw


def check_rules(body):
    if not isinstance(body.get("version"), int) or isinstance(body["version"], bool) or body["version"] < 0:
        raise Reject("version: not a non-negative integer")
    rfc3339_ms(body.get("timestamp"), "timestamp")
    sets = body.get("pcr_sets")
    if not isinstance(sets, list) or not sets:
        raise Reject("pcr_sets: missing or empty")
    seen, out = set(), []
    for i, entry in enumerate(sets):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise Reject(f"pcr_sets[{i}]: bad id")
        if entry["id"] in seen:
            raise Reject(f"duplicate set id {entry['id']}")
        seen.add(entry["id"])
        for n in (0, 1, 2):
            if not any(hex_pcr(entry.get(f"pcr{n}"), f"pcr{n}")):
                raise Reject(f"pcr_sets[{i}].pcr{n}: all zeros")
        start = rfc3339_ms(entry.get("valid_from"), "valid_from")
        until = entry.get("valid_until")
        until = None if until is None else rfc3339_ms(until, "valid_until")
        if until is not None and until <= start:
            raise Reject("valid_until not after valid_from")
        if not isinstance(entry.get("is_current"), bool):
            raise Reject("is_current: not a boolean")
        out.append((entry["id"], start, until))
    return out


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    pure = "--pure" in argv
    at = None
    if "--at" in argv:
        at_index = argv.index("--at") + 1
        if at_index >= len(argv):
            return 2
        at = argv[at_index]
        args.remove(at)
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    manifest_path, key_hex = args
    try:
        with open(manifest_path, "rb") as f:
            body = parse_strict(f.read())
        if not isinstance(body, dict) or not isinstance(body.get("signature"), str):
            raise Reject("no signature")
        der_sig = base64.b64decode(body.pop("signature"), validate=True)
        message = jcs(body).encode("utf-8")
        key = bytes.fromhex(key_hex)
        backend = "pure"
        if not pure:
            try:
                import cryptography  # noqa: F401
                backend = "cryptography"
            except ImportError:
                pass
        (verify_cryptography if backend == "cryptography" else verify_pure)(key, message, der_sig)
        sets = check_rules(body)
        now = rfc3339_ms(at, "--at") if at else rfc3339_ms(body["timestamp"], "timestamp")
        valid = [sid for sid, start, until in sets if start <= now and (until is None or now < until)]
    except (Reject, ValueError) as exc:
        print(f"rejected: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"backend": backend, "version": body["version"], "valid_sets": valid}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
