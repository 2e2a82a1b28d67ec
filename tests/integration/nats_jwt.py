#!/usr/bin/env python3
"""Decentralized NATS auth for tests: an operator, accounts and users as NKeys and JWTs.

Usage: nats_jwt.py DIR

Writes into DIR:
  auth.conf     nats-server config lines: the operator JWT and a memory resolver preloaded
                with the account "orders" (JetStream enabled)
  orders.creds  a user of "orders" (JWT + NKey seed), as `nsc generate creds` writes it
  stranger.creds a user signed by an account the server does not know

NKeys: base32 (no padding) of a prefix byte, the Ed25519 key and a CRC-16/XMODEM
(little-endian). JWTs: base64url header.claims.signature, signed with the issuer's NKey
("alg": "ed25519-nkey").
"""
import base64
import hashlib
import json
import os
import sys
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PREFIX_SEED = 18 << 3
PREFIX_OPERATOR = 14 << 3
PREFIX_ACCOUNT = 0
PREFIX_USER = 20 << 3


def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def b32(raw):
    return base64.b32encode(raw).decode().rstrip("=")


def with_crc(raw):
    return raw + crc16(raw).to_bytes(2, "little")


class NKey:
    def __init__(self, prefix):
        self.prefix = prefix
        self.key = Ed25519PrivateKey.generate()
        raw_pub = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        raw_seed = self.key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())
        self.public = b32(with_crc(bytes([prefix]) + raw_pub))
        seed_prefix = bytes([PREFIX_SEED | (prefix >> 5), (prefix & 31) << 3])
        self.seed = b32(with_crc(seed_prefix + raw_seed))

    def sign(self, data):
        return self.key.sign(data)


def b64url(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jwt(issuer, subject, name, nats):
    claims = {"iat": int(time.time()), "iss": issuer.public, "name": name,
              "sub": subject.public, "nats": dict(nats, version=2)}
    claims["jti"] = b32(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest())
    header = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = b64url(json.dumps(claims).encode())
    signature = issuer.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{b64url(signature)}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
             "wildcards": True, "conn": -1, "leaf": -1,
             "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


def account(operator, name, jetstream=True):
    key = NKey(PREFIX_ACCOUNT)
    limits = dict(UNLIMITED)
    if not jetstream:  # the system account may not have JetStream
        for k in ("mem_storage", "disk_storage", "streams", "consumer"):
            limits[k] = 0
    token = jwt(operator, key, name, {"type": "account", "limits": limits,
                                      "default_permissions": {"pub": {}, "sub": {}}})
    return key, token


def creds(account_key, name):
    user = NKey(PREFIX_USER)
    token = jwt(account_key, user, name, {"type": "user", "pub": {}, "sub": {},
                                          "subs": -1, "data": -1, "payload": -1})
    return ("-----BEGIN NATS USER JWT-----\n" + token + "\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            "-----BEGIN USER NKEY SEED-----\n" + user.seed + "\n------END USER NKEY SEED------\n\n"
            "*************************************************************\n")


def main():
    out = sys.argv[1]
    operator = NKey(PREFIX_OPERATOR)
    system, system_jwt = account(operator, "SYS", jetstream=False)
    op_jwt = jwt(operator, operator, "sidelog-test",
                 {"type": "operator", "system_account": system.public})
    orders, orders_jwt = account(operator, "orders")
    stranger, _ = account(operator, "stranger")  # never given to the server
    with open(os.path.join(out, "auth.conf"), "w") as f:
        f.write(f"operator: {op_jwt}\n")
        f.write(f"system_account: {system.public}\n")
        f.write("resolver: MEMORY\n")
        f.write(f"resolver_preload: {{\n  {system.public}: {system_jwt}\n"
                f"  {orders.public}: {orders_jwt}\n}}\n")
    for name, key in (("orders", orders), ("stranger", stranger)):
        path = os.path.join(out, f"{name}.creds")
        with open(path, "w") as f:
            f.write(creds(key, name))
        os.chmod(path, 0o600)


if __name__ == "__main__":
    main()
