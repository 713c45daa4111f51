#!/usr/bin/env python3
"""Independent recomputation of vettid-vault-crypto's known-answer vectors.

Shares no code with the Rust crate: X25519, HKDF, HMAC, ChaCha20-Poly1305 and AES-GCM come from Python's
`cryptography` (OpenSSL), Argon2id from `cryptography` >= 44 or else `argon2-cffi` (the reference C
implementation), and XChaCha20-Poly1305 is built here from HChaCha20 (draft-irtf-cfrg-xchacha-03 §2.2) plus
`cryptography`'s ChaCha20-Poly1305. Every vector is recomputed from its inputs and compared with the
committed outputs, then opened again. Coverage is checked too: every app-facing scheme and form (each
domain, each legacy ECIES payload, the pin.setup three-field form, the DEK chain) must have a vector, and
every vector file in the directory must have a check here.

Usage: independent.py [VECTOR_DIR]   (default: the `vectors` directory beside this script)
Exit: 0 all vectors agree, 1 a mismatch, 2 usage error, 3 a Python module is missing.
"""

import base64
import hashlib
import hmac
import json
import os
import struct
import sys

MISSING_MODULE = 3

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError as e:
    print(f"missing Python module ({e}): install the Debian package python3-cryptography "
          "(or `pip install cryptography`)", file=sys.stderr)
    sys.exit(MISSING_MODULE)


def _argon2_backend():
    """Argon2id raw hash from whichever independent implementation is present."""
    forced = os.environ.get("VETTID_ARGON2_BACKEND")
    if forced in (None, "cryptography"):
        try:
            from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

            def run(pin, salt, m, t, p):
                return Argon2id(salt=salt, length=32, iterations=t, lanes=p, memory_cost=m).derive(pin)

            return "cryptography", run
        except ImportError:
            if forced:
                raise
    try:
        from argon2.low_level import Type, hash_secret_raw
    except ImportError:
        print("missing Python module for Argon2id: install the Debian package python3-argon2 "
              "(argon2-cffi), or cryptography >= 44", file=sys.stderr)
        sys.exit(MISSING_MODULE)

    def run(pin, salt, m, t, p):
        return hash_secret_raw(pin, salt, time_cost=t, memory_cost=m, parallelism=p, hash_len=32,
                               type=Type.ID, version=19)

    return "argon2-cffi", run


# === HChaCha20 / XChaCha20-Poly1305 ===

def _rotl(v, n):
    return ((v << n) & 0xFFFFFFFF) | (v >> (32 - n))


def _quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = _rotl(s[b] ^ s[c], 7)


def hchacha20(key, nonce16):
    """ChaCha20 core over constants ‖ key ‖ nonce, 20 rounds, no final addition; words 0-3 and 12-15."""
    s = list(struct.unpack("<4I", b"expand 32-byte k") + struct.unpack("<8I", key) + struct.unpack("<4I", nonce16))
    for _ in range(10):
        _quarter(s, 0, 4, 8, 12); _quarter(s, 1, 5, 9, 13); _quarter(s, 2, 6, 10, 14); _quarter(s, 3, 7, 11, 15)
        _quarter(s, 0, 5, 10, 15); _quarter(s, 1, 6, 11, 12); _quarter(s, 2, 7, 8, 13); _quarter(s, 3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha20poly1305(key, nonce24):
    """(AEAD, 12-byte nonce) such that AEAD(nonce12) is XChaCha20-Poly1305(key, nonce24)."""
    return ChaCha20Poly1305(hchacha20(key, nonce24[:16])), b"\x00" * 4 + nonce24[16:]


def _self_test_hchacha20():
    # draft-irtf-cfrg-xchacha-03 §2.2.1
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    want = bytes.fromhex("82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")
    assert hchacha20(key, nonce) == want, "HChaCha20 self-test failed"


# === helpers ===

class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def require(self, what, condition):
        """A coverage rule: a scheme (or a form of it) the vectors must exercise."""
        if condition:
            self.passed += 1
        else:
            self.failed += 1
            print(f"MISSING {what}", file=sys.stderr)

    def eq(self, what, got, want):
        if got == want:
            self.passed += 1
        else:
            self.failed += 1
            print(f"MISMATCH {what}:\n  computed {got.hex() if isinstance(got, bytes) else got}\n"
                  f"  vector   {want.hex() if isinstance(want, bytes) else want}", file=sys.stderr)


def x(s):
    return bytes.fromhex(s)


def opened(aead, nonce, ct, aad):
    """Decrypt, or a description of the failure, so a tampered vector is a reported mismatch, not a crash."""
    try:
        return aead.decrypt(nonce, ct, aad)
    except InvalidTag:
        return "<authentication failed>"


def x25519_pub(private):
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def x25519_shared(private, public):
    return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))


def hkdf_sha256(ikm, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def hmac_sha256(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


# === one function per vector file ===

def check_legacy_ecies(c, doc):
    salt, info = doc["hkdf_salt"].encode(), doc["hkdf_info"].encode()
    # The three payloads the apps send: pin.unlock {pin}, pin.setup {pin, profile}, pin.change {old_pin, new_pin}.
    shapes = {tuple(sorted(json.loads(x(v["plaintext"])))) for v in doc["vectors"]}
    for shape in [("pin",), ("pin", "profile"), ("new_pin", "old_pin")]:
        c.require(f"legacy ECIES vector with payload keys {shape}", shape in shapes)
    c.require("legacy ECIES pin.setup three-field form in every vector",
              all("pin_setup_fields" in v for v in doc["vectors"]))
    for i, v in enumerate(doc["vectors"]):
        rp, ep, nonce, pt = x(v["recipient_private"]), x(v["ephemeral_private"]), x(v["nonce"]), x(v["plaintext"])
        c.eq(f"legacy[{i}] recipient_public", x25519_pub(rp), x(v["recipient_public"]))
        c.eq(f"legacy[{i}] ephemeral_public", x25519_pub(ep), x(v["ephemeral_public"]))
        # The app side: ephemeral private with the recipient public.
        key = hkdf_sha256(x25519_shared(ep, x25519_pub(rp)), salt, info)
        c.eq(f"legacy[{i}] key", key, x(v["key"]))
        envelope = x25519_pub(ep) + nonce + ChaCha20Poly1305(key).encrypt(nonce, pt, None)
        c.eq(f"legacy[{i}] envelope", envelope, x(v["envelope"]))
        # The enclave side: recipient private with the ephemeral public, from the pin.setup fields.
        f = v["pin_setup_fields"]
        eph = base64.b64decode(f["ephemeral_public_key"], validate=True)
        key2 = hkdf_sha256(x25519_shared(rp, eph), salt, info)
        plain = opened(ChaCha20Poly1305(key2), base64.b64decode(f["nonce"], validate=True),
                       base64.b64decode(f["encrypted_pin"], validate=True), None)
        c.eq(f"legacy[{i}] open(fields)", plain, pt)


# Every domain salt the enclave uses (the Rust `Domain` enum); each must have at least one vector.
DOMAINS = {"vettid-utk-v1", "vettid-cek-v1", "vettid-pin-v1", "vettid-reply-v1"}


def check_domain(c, doc):
    seen = {v["domain"] for v in doc["vectors"]}
    for d in sorted(DOMAINS):
        c.require(f"domain vector for {d}", d in seen)
    c.require(f"only known domains (got {sorted(seen - DOMAINS)})", seen <= DOMAINS)
    for i, v in enumerate(doc["vectors"]):
        rp, ep, nonce, pt = x(v["recipient_private"]), x(v["ephemeral_private"]), x(v["nonce"]), x(v["plaintext"])
        c.eq(f"domain[{i}] recipient_public", x25519_pub(rp), x(v["recipient_public"]))
        key = hkdf_sha256(x25519_shared(ep, x25519_pub(rp)), v["domain"].encode(), b"")
        c.eq(f"domain[{i}] key", key, x(v["key"]))
        aead, n12 = xchacha20poly1305(key, nonce)
        envelope = x25519_pub(ep) + nonce + aead.encrypt(n12, pt, None)
        c.eq(f"domain[{i}] envelope", envelope, x(v["envelope"]))
        env = x(v["envelope"])
        key2 = hkdf_sha256(x25519_shared(rp, env[:32]), v["domain"].encode(), b"")
        aead2, n12b = xchacha20poly1305(key2, env[32:56])
        c.eq(f"domain[{i}] open", opened(aead2, n12b, env[56:], None), pt)


def check_dek(c, doc, argon2):
    for i, v in enumerate(doc["vectors"]):
        material, owner = x(v["material"]), v["owner_id"].encode()
        salt = hashlib.sha256(owner + material).digest()
        c.eq(f"dek[{i}] salt", salt, x(v["salt"]))
        s = argon2(v["pin"].encode(), salt, v["m_kib"], v["t"], v["p"])
        c.eq(f"dek[{i}] argon2_output", s, x(v["argon2_output"]))
        dek = hmac_sha256(material, s)
        c.eq(f"dek[{i}] dek", dek, x(v["dek"]))
        c.eq(f"dek[{i}] pin_verifier", hmac_sha256(dek, b"vettid-pin-verifier-v1"), x(v["pin_verifier"]))


def check_dek_aead(c, doc, dek_small):
    chained = False
    for i, v in enumerate(doc["vectors"]):
        dek, nonce, pt = x(v["dek"]), x(v["nonce"]), x(v["plaintext"])
        if "dek_from" in v:
            # PIN -> DEK -> encrypted_credential: this DEK is the one derived in dek_small.json.
            c.eq(f"dek_aead[{i}] dek_from", v["dek_from"], "dek_small.json vectors[0]")
            c.eq(f"dek_aead[{i}] dek", dek, x(dek_small["vectors"][0]["dek"]))
            chained = True
        blob = nonce + AESGCM(dek).encrypt(nonce, pt, None)
        c.eq(f"dek_aead[{i}] blob", blob, x(v["blob"]))
        c.eq(f"dek_aead[{i}] blob_b64", base64.b64decode(v["blob_b64"], validate=True), x(v["blob"]))
        stored = x(v["blob"])
        c.eq(f"dek_aead[{i}] open", opened(AESGCM(dek), stored[:12], stored[12:], None), pt)
    c.require("dek_aead vector chained to a derived DEK", chained)


def check_pin_verifier(c, doc):
    for i, v in enumerate(doc["vectors"]):
        c.eq(f"pin_verifier[{i}]", hmac_sha256(x(v["dek"]), b"vettid-pin-verifier-v1"), x(v["verifier"]))


def check_sealed(c, doc):
    for i, v in enumerate(doc["vectors"]):
        vault, name, version = v["vault"].encode(), v["name"].encode(), int(v["version"])
        label = b"vettid-sealed-object"
        aad = (struct.pack(">I", len(label)) + label + b"\x01" + struct.pack(">I", len(vault)) + vault
               + struct.pack(">I", len(name)) + name + struct.pack(">Q", version))
        c.eq(f"sealed[{i}] aad", aad, x(v["aad"]))
        key, nonce, pt = x(v["key"]), x(v["nonce"]), x(v["plaintext"])
        blob = b"\x01" + nonce + AESGCM(key).encrypt(nonce, pt, aad)
        c.eq(f"sealed[{i}] sealed", blob, x(v["sealed"]))
        stored = x(v["sealed"])
        c.eq(f"sealed[{i}] open", opened(AESGCM(key), stored[1:13], stored[13:], aad), pt)


def main():
    if len(sys.argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    _self_test_hchacha20()
    backend, argon2 = _argon2_backend()
    directory = sys.argv[1] if len(sys.argv) == 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors")

    def load(name):
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            return json.load(f)

    c = Checker()
    dek_small = load("dek_small.json")
    checks = {
        "legacy_ecies.json": lambda doc: check_legacy_ecies(c, doc),
        "domain.json": lambda doc: check_domain(c, doc),
        "dek_small.json": lambda doc: check_dek(c, doc, argon2),
        "dek_production.json": lambda doc: check_dek(c, doc, argon2),
        "dek_aead.json": lambda doc: check_dek_aead(c, doc, dek_small),
        "pin_verifier.json": lambda doc: check_pin_verifier(c, doc),
        "sealed.json": lambda doc: check_sealed(c, doc),
    }
    for name, check in checks.items():
        doc = load(name)
        c.require(f"{name} has vectors", len(doc["vectors"]) > 0)
        check(doc)
    # A vector file nobody recomputes would pin nothing independently.
    unchecked = sorted(set(f for f in os.listdir(directory) if f.endswith(".json")) - set(checks))
    c.require(f"an independent check for every vector file (unchecked: {unchecked})", not unchecked)
    print(f"independent vectors (argon2 via {backend}): {c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
