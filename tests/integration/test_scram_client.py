"""Self-test of scram_client.py (no broker): the examples of RFC 7677 and RFC 5802."""
import base64
import hashlib
import hmac

import pytest

from scram_client import ScramError, client_final, client_first, saslname, verify_server_final

# RFC 7677 section 3: SCRAM-SHA-256, user "user", password "pencil".
SHA256_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SHA256_SERVER_FIRST = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                       b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
SHA256_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
SHA256_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

# RFC 5802 section 5: SCRAM-SHA-1, same user and password.
SHA1_SERVER_FIRST = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
SHA1_FINAL = b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
SHA1_SERVER_FINAL = b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="


def test_rfc7677_sha256():
    first, st = client_first("user", nonce="rOprNGfwEbeRWgbNEkqO")
    assert first == SHA256_FIRST
    final, expected = client_final(st, SHA256_SERVER_FIRST, "pencil")
    assert final == SHA256_FINAL
    assert b"v=" + base64.b64encode(expected) == SHA256_SERVER_FINAL
    assert verify_server_final(st, SHA256_SERVER_FINAL)


def test_rfc5802_sha1():
    first, st = client_first("user", mech="SCRAM-SHA-1", nonce="fyko+d2lbbFgONRv9qkxdawL")
    assert first == b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
    final, _ = client_final(st, SHA1_SERVER_FIRST.decode(), "pencil")
    assert final == SHA1_FINAL
    assert verify_server_final(st, SHA1_SERVER_FINAL.decode())


def test_sha512_round_trip_against_a_server_written_here():
    """A server side written from RFC 5802 section 3 accepts the client's proof."""
    first, st = client_first("a,b=c", mech="SCRAM-SHA-512")
    assert first.startswith(b"n,,n=a=2Cb=3Dc,r=")
    salt, count = b"0123456789abcdef", 4096
    server_first = f"r={st['nonce']}XYZ,s={base64.b64encode(salt).decode()},i={count}"
    final, expected = client_final(st, server_first, "pw")
    salted = hashlib.pbkdf2_hmac("sha512", b"pw", salt, count)
    stored = hashlib.sha512(hmac.new(salted, b"Client Key", "sha512").digest()).digest()
    without_proof, proof = final.decode().rsplit(",p=", 1)
    auth = f"{first.decode()[3:]},{server_first},{without_proof}".encode()
    sig = hmac.new(stored, auth, "sha512").digest()
    client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), sig))
    assert hashlib.sha512(client_key).digest() == stored
    server_key = hmac.new(salted, b"Server Key", "sha512").digest()
    assert hmac.new(server_key, auth, "sha512").digest() == expected


def test_refuses_bad_servers():
    _, st = client_first("user", nonce="abc")
    for bad in [b"r=abd123,s=AAAA,i=1",       # nonce not ours
                b"r=abc,s=AAAA,i=1",          # nonce not extended
                b"m=x,r=abc1,s=AAAA,i=1",     # mandatory extension
                b"r=abc1,s=A*AA,i=1",         # salt not base64
                b"r=abc1,s=AAAA,i=0",         # iteration count not positive
                b"r=abc1,i=1,s=AAAA"]:        # order
        with pytest.raises(ScramError):
            client_final(st, bad, "pencil")
    _, st = client_first("user", nonce="rOprNGfwEbeRWgbNEkqO")
    client_final(st, SHA256_SERVER_FIRST, "pencil")
    for bad in [b"e=invalid-proof", b"v=" + base64.b64encode(b"x" * 32), b"x=1"]:
        with pytest.raises(ScramError):
            verify_server_final(st, bad)


def test_saslname():
    assert saslname("a=b,c") == "a=3Db=2Cc"
    _, st = client_first("user")
    assert len(base64.b64decode(st["nonce"])) == 24
