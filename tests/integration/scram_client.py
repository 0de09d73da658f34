"""scram_client.py - the client side of SCRAM (RFC 5802, RFC 7677) for moat's tests.

Standard library only (hashlib, hmac, base64, os), so an integration test can
drive MQTT 5.0 enhanced authentication with any MQTT client that lets it set
the Authentication Method and Data:

    first, st = client_first("alice", mech="SCRAM-SHA-256")
    # CONNECT  Authentication Method "SCRAM-SHA-256", Authentication Data first
    # AUTH 0x18 from the broker carries server_first
    final, expected = client_final(st, server_first, "password")
    # AUTH 0x18 Authentication Data final; CONNACK carries server_final
    verify_server_final(st, server_final)

Messages are bytes (what Authentication Data holds); str is accepted where a
message is read. No channel binding (gs2 header "n,,"), no SASLprep: the
user name and password are sent as given, UTF-8 encoded, which is also what
moat compares. Anything malformed from the server raises ScramError.
"""
import base64
import hashlib
import hmac
import os

# Authentication Method -> hashlib name. SCRAM-SHA-1 only for RFC 5802's own example.
MECHS = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


class ScramError(Exception):
    """The server's message is malformed, not ours, or says no."""


def saslname(name):
    """RFC 5802 section 5.1: ',' and '=' escaped as =2C and =3D."""
    return name.replace("=", "=3D").replace(",", "=2C")


def _text(msg):
    return msg.decode("utf-8") if isinstance(msg, (bytes, bytearray)) else msg


def _b64(raw):
    return base64.b64encode(raw).decode("ascii")


def _unb64(text, what):
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as e:
        raise ScramError(f"{what}: not base64: {text!r}") from e


def _attrs(msg):
    """Splits a message into (name, value) pairs, each 'x=value'."""
    out = []
    for item in _text(msg).split(","):
        if len(item) < 2 or item[1] != "=" or not item[0].isalpha():
            raise ScramError(f"malformed attribute {item!r}")
        out.append((item[0], item[2:]))
    return out


def _hmac(h, key, msg):
    return hmac.new(key, msg, h).digest()


def client_first(user, mech="SCRAM-SHA-256", nonce=None, gs2_header="n,,"):
    """The client-first-message for user, and the state the next steps need.

    nonce defaults to 24 random bytes in base64; gs2_header may be set (e.g.
    "n,a=user,") to test what the server accepts.
    """
    if mech not in MECHS:
        raise ValueError(f"unknown mechanism {mech!r}")
    if nonce is None:
        nonce = _b64(os.urandom(24))
    bare = f"n={saslname(user)},r={nonce}"
    state = {"mech": mech, "hash": MECHS[mech], "gs2": gs2_header, "nonce": nonce,
             "bare": bare}
    return (gs2_header + bare).encode("utf-8"), state


def _read_server_first(state, server_first):
    """Returns (combined nonce, salt, iterations) of a server-first-message."""
    attrs = _attrs(server_first)
    if len(attrs) < 3 or [a[0] for a in attrs[:3]] != ["r", "s", "i"]:
        raise ScramError(f"server-first-message is not r=,s=,i=: {server_first!r}")
    nonce, salt, count = (a[1] for a in attrs[:3])
    if not nonce.startswith(state["nonce"]) or len(nonce) == len(state["nonce"]):
        raise ScramError("server nonce does not extend ours")
    if not count.isdigit() or count.startswith("0"):
        raise ScramError(f"bad iteration count {count!r}")
    return nonce, _unb64(salt, "salt"), int(count)


def client_final(state, server_first, password):
    """The client-final-message answering server_first, and the ServerSignature
    (raw bytes) the server-final-message must carry."""
    h = state["hash"]
    nonce, salt, count = _read_server_first(state, server_first)
    pw = password.encode("utf-8") if isinstance(password, str) else bytes(password)
    salted = hashlib.pbkdf2_hmac(h, pw, salt, count)
    client_key = _hmac(h, salted, b"Client Key")
    stored_key = hashlib.new(h, client_key).digest()
    server_key = _hmac(h, salted, b"Server Key")
    without_proof = f"c={_b64(state['gs2'].encode('utf-8'))},r={nonce}"
    auth = ",".join([state["bare"], _text(server_first), without_proof]).encode("utf-8")
    signature = _hmac(h, stored_key, auth)
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    state["server_signature"] = _hmac(h, server_key, auth)
    return f"{without_proof},p={_b64(proof)}".encode("ascii"), state["server_signature"]


def verify_server_final(state, msg):
    """Checks the server-final-message: True if its v= is the ServerSignature
    client_final expected; ScramError for e=, anything malformed or a wrong
    signature."""
    attrs = _attrs(msg)
    name, value = attrs[0]
    if name == "e":
        raise ScramError(f"server refused: {value}")
    if name != "v":
        raise ScramError(f"server-final-message without v=: {msg!r}")
    if "server_signature" not in state:
        raise ScramError("client_final was not called")
    if not hmac.compare_digest(_unb64(value, "v="), state["server_signature"]):
        raise ScramError("wrong ServerSignature: the server does not know the credentials")
    return True
