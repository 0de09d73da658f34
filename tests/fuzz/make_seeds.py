#!/usr/bin/python3
"""make_seeds.py - write the seed corpora of the libFuzzer targets.

Run from anywhere with /usr/bin/python3 (standard library only):

    /usr/bin/python3 tests/fuzz/make_seeds.py

It rewrites tests/fuzz/corpus/<target>/ with a small set of hand-made inputs
per target: valid packets of every type in each protocol version (CONNECT
with will, user name, password and properties, PUBLISH at each QoS with
properties, SUBSCRIBE/UNSUBSCRIBE, acknowledgements, PINGREQ, DISCONNECT,
AUTH), whole sessions, and borderline inputs the codec must refuse. The
input formats follow the targets' header comments:

    fuzz_decode_v31/v311/v5  a client-to-server byte stream
    fuzz_decode_client       one byte (version 3/4/5, bit 7 = strict UTF-8),
                             then a server-to-client byte stream
    fuzz_props               one byte (low nibble = packet type, 0 = will;
                             bit 4 = strict UTF-8), then a property block
    fuzz_topic               filter, 0x00, topic name
    fuzz_frame               one configuration byte, then a byte stream
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

# ---- MQTT data types ----


def u8(v):
    return struct.pack(">B", v)


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def s(x):
    """A UTF-8 string or binary data: 2-byte length, then the bytes."""
    if isinstance(x, str):
        x = x.encode("utf-8")
    return u16(len(x)) + x


def packet(ptype, flags, body):
    return u8(ptype << 4 | flags) + varint(len(body)) + body


# ---- properties (MQTT 5.0 section 2.2.2) ----

PFI, MSG_EXPIRY, CONTENT_TYPE, RESP_TOPIC, CORR_DATA = 0x01, 0x02, 0x03, 0x08, 0x09
SUBID, SESSION_EXPIRY, ASSIGNED_ID, SERVER_KA = 0x0B, 0x11, 0x12, 0x13
AUTH_METHOD, AUTH_DATA, REQ_PROBLEM, WILL_DELAY, REQ_RESP = 0x15, 0x16, 0x17, 0x18, 0x19
RESP_INFO, SERVER_REF, REASON_STR, RECV_MAX, TA_MAX = 0x1A, 0x1C, 0x1F, 0x21, 0x22
TOPIC_ALIAS, MAX_QOS, RETAIN_AVAIL, USER, MAX_PACKET = 0x23, 0x24, 0x25, 0x26, 0x27
WILDCARD_AVAIL, SUBID_AVAIL, SHARED_AVAIL = 0x28, 0x29, 0x2A


def p_byte(i, v):
    return varint(i) + u8(v)


def p_u16(i, v):
    return varint(i) + u16(v)


def p_u32(i, v):
    return varint(i) + u32(v)


def p_varint(i, v):
    return varint(i) + varint(v)


def p_str(i, v):
    return varint(i) + s(v)


def p_user(k, v):
    return varint(USER) + s(k) + s(v)


def props(*entries):
    block = b"".join(entries)
    return varint(len(block)) + block


NOPROPS = b"\x00"

# ---- client packets ----

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP = 8, 9, 10, 11, 12, 13
DISCONNECT, AUTH = 14, 15


def connect(version, client_id, clean=True, keep_alive=60, will=None, user=None,
            password=None, cprops=NOPROPS, will_props=NOPROPS, reserved=False):
    """will = (topic, payload, qos, retain)."""
    name = "MQIsdp" if version == 3 else "MQTT"
    flags = 0x02 if clean else 0
    if reserved:
        flags |= 0x01
    if will:
        flags |= 0x04 | will[2] << 3 | (0x20 if will[3] else 0)
    if password is not None:
        flags |= 0x40
    if user is not None:
        flags |= 0x80
    body = s(name) + u8(version) + u8(flags) + u16(keep_alive)
    if version == 5:
        body += cprops
    body += s(client_id)
    if will:
        if version == 5:
            body += will_props
        body += s(will[0]) + s(will[1])
    if user is not None:
        body += s(user)
    if password is not None:
        body += s(password)
    return packet(CONNECT, 0, body)


def publish(version, topic, payload, qos=0, pid=1, dup=False, retain=False, pprops=NOPROPS):
    flags = (0x08 if dup else 0) | qos << 1 | (1 if retain else 0)
    body = s(topic)
    if qos:
        body += u16(pid)
    if version == 5:
        body += pprops
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return packet(PUBLISH, flags, body + payload)


def ack(ptype, pid, reason=None, aprops=None):
    body = u16(pid)
    if reason is not None:
        body += u8(reason)
        if aprops is not None:
            body += aprops
    return packet(ptype, 0x02 if ptype == PUBREL else 0, body)


def subscribe(version, pid, entries, sprops=NOPROPS):
    body = u16(pid) + (sprops if version == 5 else b"")
    for f, o in entries:
        body += s(f) + u8(o)
    return packet(SUBSCRIBE, 0x02, body)


def unsubscribe(version, pid, filters, uprops=NOPROPS):
    body = u16(pid) + (uprops if version == 5 else b"")
    for f in filters:
        body += s(f)
    return packet(UNSUBSCRIBE, 0x02, body)


def pingreq():
    return packet(PINGREQ, 0, b"")


def disconnect(reason=None, dprops=None, ptype=DISCONNECT):
    body = b""
    if reason is not None:
        body += u8(reason)
        if dprops is not None:
            body += dprops
    return packet(ptype, 0, body)


# ---- server packets ----


def connack(version, session_present, rc, cprops=NOPROPS):
    body = u8(1 if session_present else 0) + u8(rc)
    if version == 5:
        body += cprops
    return packet(CONNACK, 0, body)


def suback(version, pid, codes, sprops=NOPROPS, ptype=SUBACK):
    body = u16(pid)
    if version == 5:
        body += sprops
    return packet(ptype, 0, body + bytes(codes))


def pingresp():
    return packet(PINGRESP, 0, b"")


# ---- corpora ----


def v3_client(version):
    """Client-to-server seeds for 3.1 (version 3) or 3.1.1 (version 4)."""
    tag = "v31" if version == 3 else "v311"
    conn = connect(version, "moat-client-1")
    seeds = {
        f"connect_{tag}_basic": conn,
        f"connect_{tag}_will_user_password": connect(
            version, "c1", clean=False, keep_alive=30,
            will=("clients/c1/status", b"offline", 1, True), user="alice", password=b"s3cret"),
        f"connect_{tag}_will_qos2": connect(version, "c2", will=("w", b"", 2, False)),
        f"publish_{tag}_qos0": conn + publish(version, "sensors/temp", "21.5"),
        f"publish_{tag}_qos1_retain": conn + publish(version, "a/b", "hello", 1, 7, retain=True),
        f"publish_{tag}_qos2_dup": conn + publish(version, "a/b/c", b"\x00\xff", 2, 65535,
                                                  dup=True),
        f"subscribe_{tag}": conn + subscribe(version, 2, [("sport/tennis/+", 1), ("#", 0),
                                                          ("a/+/c/#", 2)]),
        f"unsubscribe_{tag}": conn + unsubscribe(version, 3, ["sport/tennis/+", "#"]),
        f"acks_{tag}": ack(PUBACK, 1) + ack(PUBREC, 2) + ack(PUBREL, 2) + ack(PUBCOMP, 2),
        f"pingreq_{tag}": pingreq(),
        f"disconnect_{tag}": disconnect(),
        f"session_{tag}": conn + subscribe(version, 1, [("t/#", 1)]) +
        publish(version, "t/x", "m", 1, 2) + ack(PUBACK, 5) + pingreq() +
        unsubscribe(version, 4, ["t/#"]) + disconnect(),
        # Borderline: each is refused somewhere.
        f"bad_{tag}_empty_client_id": connect(version, "", clean=False),
        f"bad_{tag}_password_without_user": connect(version, "c", password=b"pw"),
        f"bad_{tag}_reserved_flag": connect(version, "c", reserved=True),
        f"bad_{tag}_publish_wildcard_topic": publish(version, "a/+", "x"),
        f"bad_{tag}_subscribe_qos3": subscribe(version, 1, [("a", 3)]),
        f"bad_{tag}_subscribe_empty": packet(SUBSCRIBE, 0x02, u16(1)),
        f"bad_{tag}_packet_id_0": ack(PUBACK, 0),
        f"bad_{tag}_auth": disconnect(ptype=AUTH),
        f"bad_{tag}_nonminimal_length": b"\xc0\x80\x00",
        f"bad_{tag}_length_5_bytes": b"\x30\xff\xff\xff\xff\x01",
        f"bad_{tag}_pubrel_flags": packet(PUBREL, 0, u16(1)),
        f"bad_{tag}_level_mismatch": packet(CONNECT, 0, s("MQTT" if version == 3 else "MQIsdp") +
                                              u8(version) + u8(0x02) + u16(60) + s("c")),
        f"long_{tag}_publish_4byte_length_header": b"\x30\x80\x80\x80\x01",
    }
    # MQTT 3.1 set DUP on retried PUBREL / SUBSCRIBE / UNSUBSCRIBE (flags 1010); 3.1.1 forbids it.
    retried = (packet(PUBREL, 0x0A, u16(9)) +
               packet(SUBSCRIBE, 0x0A, u16(10) + s("a/b") + u8(1)) +
               packet(UNSUBSCRIBE, 0x0A, u16(11) + s("a/b")))
    if version == 3:
        seeds["retried_v31_dup_flags"] = retried
    else:
        seeds["connect_v311_empty_client_id_clean"] = connect(4, "", clean=True)
        seeds["bad_v311_dup_flags"] = retried
    return seeds


def v5_client():
    will_props = props(p_u32(WILL_DELAY, 10), p_byte(PFI, 1), p_u32(MSG_EXPIRY, 3600),
                       p_str(CONTENT_TYPE, "text/plain"), p_str(RESP_TOPIC, "reply/c1"),
                       p_str(CORR_DATA, b"\x01\x02"), p_user("k", "v"))
    cprops = props(p_u32(SESSION_EXPIRY, 120), p_u16(RECV_MAX, 20), p_u32(MAX_PACKET, 65536),
                   p_u16(TA_MAX, 10), p_byte(REQ_RESP, 1), p_byte(REQ_PROBLEM, 0),
                   p_user("region", "eu"), p_user("region", "us"))
    conn = connect(5, "moat-v5", cprops=cprops)
    pub_props = props(p_byte(PFI, 1), p_u32(MSG_EXPIRY, 60), p_u16(TOPIC_ALIAS, 3),
                      p_str(RESP_TOPIC, "resp/x"), p_str(CORR_DATA, b"id-42"),
                      p_str(CONTENT_TYPE, "application/json"), p_user("a", "b"))
    reason_props = props(p_str(REASON_STR, "ok"), p_user("x", "y"))
    return {
        "connect_v5_basic": connect(5, "c5"),
        "connect_v5_will": connect(5, "c5w", clean=False, keep_alive=0,
                                   will=("last/will", "bye", 1, True), user="bob",
                                   password=b"\x00pw", cprops=cprops, will_props=will_props),
        "connect_v5_password_no_user": connect(5, "", password=b"token"),
        "connect_v5_auth": connect(5, "c", cprops=props(p_str(AUTH_METHOD, "SCRAM-SHA-1"),
                                                        p_str(AUTH_DATA, b"client-first"))),
        "publish_v5_qos0": conn + publish(5, "sensors/temp", "21.5"),
        "publish_v5_qos1_props": conn + publish(5, "a/b", '{"v":1}', 1, 9, pprops=pub_props),
        "publish_v5_qos2_dup_retain": conn + publish(5, "a/b/c", b"\xff\xfe", 2, 1, dup=True,
                                                     retain=True,
                                                     pprops=props(p_user("k", "v"))),
        "publish_v5_topic_alias_only": publish(5, "", "x", pprops=props(p_u16(TOPIC_ALIAS, 1))),
        "subscribe_v5": conn + subscribe(5, 10, [("sport/+", 0x01 | 0x04 | 0x08 | 0x20),
                                                 ("$share/grp/a/#", 0x02),
                                                 ("#", 0x10)],
                                         sprops=props(p_varint(SUBID, 268435455),
                                                      p_user("u", "1"))),
        "unsubscribe_v5": conn + unsubscribe(5, 11, ["sport/+", "$share/grp/a/#"],
                                             uprops=props(p_user("u", "2"))),
        "acks_v5": ack(PUBACK, 1) + ack(PUBACK, 2, 0x10) + ack(PUBREC, 3, 0x80, reason_props) +
        ack(PUBREL, 3, 0x92, NOPROPS) + ack(PUBCOMP, 3, 0x00, reason_props),
        "pingreq_v5": pingreq(),
        "disconnect_v5_reason_props": disconnect(0x04, props(p_u32(SESSION_EXPIRY, 0),
                                                             p_str(REASON_STR, "bye"))),
        "disconnect_v5_empty": disconnect(),
        "auth_v5": disconnect(0x18, props(p_str(AUTH_METHOD, "SCRAM-SHA-1"),
                                          p_str(AUTH_DATA, b"client-final")), AUTH),
        "auth_v5_reauthenticate": disconnect(0x19, props(p_str(AUTH_METHOD, "SCRAM-SHA-1"),
                                                         p_user("k", "v")), AUTH),
        "session_v5": conn + subscribe(5, 1, [("t/#", 1)]) + publish(5, "t/x", "m", 1, 2) +
        ack(PUBACK, 5) + pingreq() + unsubscribe(5, 4, ["t/#"]) + disconnect(0),
        # Borderline.
        "bad_v5_duplicate_property": publish(5, "t", "x", pprops=props(p_u32(MSG_EXPIRY, 1),
                                                                       p_u32(MSG_EXPIRY, 2))),
        "bad_v5_pfi_not_utf8": publish(5, "t", b"\xc3\x28", pprops=props(p_byte(PFI, 1))),
        "bad_v5_subid_from_client": publish(5, "t", "x", pprops=props(p_varint(SUBID, 1))),
        "bad_v5_no_local_shared": subscribe(5, 1, [("$share/g/t", 0x04)]),
        "bad_v5_retain_handling_3": subscribe(5, 1, [("t", 0x30)]),
        "bad_v5_auth_data_without_method": connect(5, "c", cprops=props(p_str(AUTH_DATA, b"x"))),
        "bad_v5_topic_alias_0": publish(5, "t", "x", pprops=props(p_u16(TOPIC_ALIAS, 0))),
        "bad_v5_property_not_allowed": disconnect(0, props(p_u16(RECV_MAX, 1))),
        "bad_v5_nonminimal_subid": subscribe(5, 1, [("t", 0)],
                                             sprops=b"\x03" + u8(SUBID) + b"\x81\x00"),
        "publish_v5_control_char_topic": publish(5, "t\x01x", "x"),
    }


def client_side():
    seeds = {}
    for v in (3, 4):
        tag = "v31" if v == 3 else "v311"
        seeds[f"server_{tag}_session"] = u8(v) + (
            connack(v, False, 0) + suback(v, 1, [0, 1, 2, 0x80]) +
            publish(v, "t/x", "m", 1, 3) + ack(PUBACK, 4) + ack(PUBREC, 5) + ack(PUBREL, 5) +
            ack(PUBCOMP, 6) + suback(v, 2, [], ptype=UNSUBACK) + pingresp())
        seeds[f"server_{tag}_connack_refused"] = u8(v) + connack(v, False, 5)
        seeds[f"bad_server_{tag}_connack_code"] = u8(v) + connack(v, False, 6)
        seeds[f"bad_server_{tag}_session_present_refused"] = u8(v) + connack(v, True, 4)
    cprops = props(p_u32(SESSION_EXPIRY, 0), p_u16(RECV_MAX, 100), p_byte(MAX_QOS, 1),
                   p_byte(RETAIN_AVAIL, 0), p_u32(MAX_PACKET, 1 << 20),
                   p_str(ASSIGNED_ID, "auto-1"), p_u16(TA_MAX, 5), p_str(REASON_STR, "welcome"),
                   p_byte(WILDCARD_AVAIL, 1), p_byte(SUBID_AVAIL, 1), p_byte(SHARED_AVAIL, 0),
                   p_u16(SERVER_KA, 30), p_str(RESP_INFO, "resp/"), p_str(SERVER_REF, "b:1883"),
                   p_str(AUTH_METHOD, "PLAIN"), p_str(AUTH_DATA, b"ok"), p_user("k", "v"))
    seeds["server_v5_session"] = u8(5) + (
        connack(5, True, 0, cprops) +
        suback(5, 1, [0, 1, 2, 0x80, 0x87, 0x8F, 0x9E, 0xA1, 0xA2], props(p_str(REASON_STR, "r"))) +
        publish(5, "t/x", "m", 1, 3, pprops=props(p_varint(SUBID, 1), p_varint(SUBID, 300),
                                                  p_user("k", "v"))) +
        ack(PUBACK, 4, 0x10) + suback(5, 2, [0x00, 0x11, 0x80], ptype=UNSUBACK) + pingresp() +
        disconnect(0x8B, props(p_str(SERVER_REF, "other:1883"), p_str(REASON_STR, "down"))))
    seeds["server_v5_strict_connack_refused"] = u8(0x85) + connack(5, False, 0x86, NOPROPS)
    seeds["server_v5_auth"] = u8(5) + disconnect(0x18, props(p_str(AUTH_METHOD, "SCRAM"),
                                                             p_str(AUTH_DATA, b"server-first")),
                                                 AUTH)
    seeds["bad_server_v5_disconnect_session_expiry"] = u8(5) + disconnect(
        0, props(p_u32(SESSION_EXPIRY, 10)))
    seeds["bad_server_v5_connect"] = u8(5) + connect(5, "c")
    seeds["bad_server_v5_suback_code"] = u8(5) + suback(5, 1, [0x03])
    return seeds


def props_seeds():
    def where(w, block, strict=False):
        return u8(w | (0x10 if strict else 0)) + block

    return {
        "will_all": where(0, props(p_byte(PFI, 0), p_u32(MSG_EXPIRY, 1), p_str(CONTENT_TYPE, "t"),
                                   p_str(RESP_TOPIC, "r"), p_str(CORR_DATA, b"c"),
                                   p_u32(WILL_DELAY, 5), p_user("k", "v"))),
        "connect_all": where(CONNECT, props(p_u32(SESSION_EXPIRY, 1), p_str(AUTH_METHOD, "m"),
                                            p_str(AUTH_DATA, b"d"), p_byte(REQ_PROBLEM, 1),
                                            p_byte(REQ_RESP, 0), p_u16(RECV_MAX, 1),
                                            p_u16(TA_MAX, 0), p_user("k", "v"),
                                            p_u32(MAX_PACKET, 1))),
        "connack_all": where(CONNACK, props(p_u32(SESSION_EXPIRY, 1), p_str(ASSIGNED_ID, "a"),
                                            p_u16(SERVER_KA, 1), p_str(AUTH_METHOD, "m"),
                                            p_str(AUTH_DATA, b"d"), p_str(RESP_INFO, "i"),
                                            p_str(SERVER_REF, "s"), p_str(REASON_STR, "r"),
                                            p_u16(RECV_MAX, 9), p_u16(TA_MAX, 9),
                                            p_byte(MAX_QOS, 0), p_byte(RETAIN_AVAIL, 1),
                                            p_user("k", "v"), p_u32(MAX_PACKET, 9),
                                            p_byte(WILDCARD_AVAIL, 1), p_byte(SUBID_AVAIL, 0),
                                            p_byte(SHARED_AVAIL, 1))),
        "publish_subids": where(PUBLISH, props(p_varint(SUBID, 1), p_user("a", "b"),
                                               p_varint(SUBID, 16384), p_u16(TOPIC_ALIAS, 2),
                                               p_varint(SUBID, 268435455))),
        "puback_reason": where(PUBACK, props(p_str(REASON_STR, "fine"), p_user("k", ""))),
        "subscribe_subid": where(SUBSCRIBE, props(p_varint(SUBID, 127), p_user("", ""))),
        "unsuback_user": where(UNSUBACK, props(p_user("k1", "v1"), p_user("k1", "v2"))),
        "disconnect_strict": where(DISCONNECT, props(p_u32(SESSION_EXPIRY, 0),
                                                     p_str(SERVER_REF, "s"),
                                                     p_str(REASON_STR, "caf\u00e9")), True),
        "auth_method": where(AUTH, props(p_str(AUTH_METHOD, "m"), p_str(REASON_STR, "r"))),
        "pingreq_empty": where(PINGREQ, NOPROPS),
        "bad_duplicate": where(CONNECT, props(p_u16(RECV_MAX, 1), p_u16(RECV_MAX, 2))),
        "bad_not_allowed": where(PUBACK, props(p_u16(TOPIC_ALIAS, 1))),
        "bad_unknown_id": where(PUBLISH, props(b"\x7f\x00")),
        "bad_runs_past": where(PUBLISH, b"\x05" + p_u32(MSG_EXPIRY, 1)),
        "bad_bool_2": where(CONNACK, props(p_byte(MAX_QOS, 2))),
        "bad_response_topic_wildcard": where(PUBLISH, props(p_str(RESP_TOPIC, "a/#"))),
        "bad_strict_control": where(PUBLISH, props(p_str(CONTENT_TYPE, "a\x7f")), True),
        "bad_utf8_surrogate": where(PUBLISH, props(varint(CONTENT_TYPE) + s(b"\xed\xa0\x80"))),
    }


def topic_seeds():
    pairs = [
        ("sport/tennis/player1/#", "sport/tennis/player1"),
        ("sport/tennis/+", "sport/tennis/player1"),
        ("sport/+", "sport/"),
        ("+/+", "/finance"),
        ("/+", "/finance"),
        ("+", "/finance"),
        ("#", "$SYS/broker/load"),
        ("$SYS/#", "$SYS/broker/load"),
        ("+/monitor/Clients", "$SYS/monitor/Clients"),
        ("$share/group1/sport/#", "sport/tennis"),
        ("$share//a", "a"),
        ("$share/g+/a", "a"),
        ("$share/g", "g"),
        ("sport/tennis#", "sport/tennis"),
        ("sport/#/ranking", "sport/x/ranking"),
        ("a//b", "a//b"),
        ("a/+/+/#", "a/b/c"),
        ("a/b/", "a/b/"),
        ("", "a"),
    ]
    seeds = {}
    for i, (f, t) in enumerate(pairs):
        name = f"pair_{i:02d}"
        seeds[name] = f.encode() + b"\x00" + t.encode()
    seeds["filter_only_plus_hash"] = b"+/+/#"
    seeds["topic_with_hash"] = b"a/b\x00a/#"
    return seeds


def frame_seeds():
    # Configuration byte: bits 0-2 chunk index, bits 3-5 max packet index, bit 6 1-byte feeds,
    # bit 7 raise the maximum to 64 KiB after the first frame.
    def cfg(chunk=0, maxp=0, ones=False, raise_max=False):
        return u8(chunk | maxp << 3 | (0x40 if ones else 0) | (0x80 if raise_max else 0))

    session = (connect(4, "c") + subscribe(4, 1, [("t/#", 1)]) + publish(4, "t/x", "m" * 300, 1, 2)
               + pingreq() + disconnect())
    pings = pingreq() * 40
    return {
        "session_default": cfg() + session,
        "session_chunk1_maxdefault": cfg(1, 0) + session,
        "session_chunk2_ones": cfg(2, 6, True) + session,
        "session_chunk8_max1024": cfg(4, 5) + session,
        "pings_chunk1": cfg(1, 2) + pings,
        "pings_chunk3_max5": cfg(3, 2) + pings + b"\xc0",
        "toobig_max16": cfg(5, 3) + pingreq() + publish(4, "t", "x" * 100),
        "partial_header": cfg(0, 7) + pingreq() + b"\x30\xff\xff",
        "partial_body": cfg(6, 6) + publish(4, "t", "x" * 100)[:50],
        "nonminimal_length": cfg(7, 6) + pingreq() + b"\x30\x80\x00",
        "length_5_bytes": cfg() + b"\x30\xff\xff\xff\xff\x7f",
        "huge_claim_default_max": cfg() + b"\x30\xff\xff\xff\x7f",
        "bad_first_byte": cfg() + pingreq() + b"\x00\x00",
        "max_2_ping": cfg(1, 1) + pingreq() + pingreq(),
        "raise_max_after_connect": cfg(5, 4, raise_max=True) + connect(5, "c") +
        publish(5, "t", "x" * 1000, 1, 1) + pingreq(),
        "raise_max_first_too_big": cfg(5, 3, raise_max=True) + publish(4, "t", "x" * 100),
    }


def write(target, seeds):
    """Rewrites target's generated seeds; regress-*.bin (inputs that once found a bug) stay."""
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        if not name.startswith("regress-"):
            os.unlink(os.path.join(d, name))
    for name, data in sorted(seeds.items()):
        with open(os.path.join(d, name + ".bin"), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seeds)} seeds")


def main():
    write("fuzz_decode_v31", v3_client(3))
    write("fuzz_decode_v311", v3_client(4))
    write("fuzz_decode_v5", v5_client())
    write("fuzz_decode_client", client_side())
    write("fuzz_props", props_seeds())
    write("fuzz_topic", topic_seeds())
    write("fuzz_frame", frame_seeds())


if __name__ == "__main__":
    main()
