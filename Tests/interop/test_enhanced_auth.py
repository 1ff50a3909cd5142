"""MQTT 5.0 enhanced authentication [MQTT-4.12] with SCRAM-SHA-256 (RFC 5802/7677): a SCRAM
client written here with Python's hashlib/hmac (independent of the broker's code) signs in
with the password `starling ctl users add` set, checks the server's signature, and
re-authenticates; wrong passwords, unknown methods and out-of-sequence packets are refused."""
import base64
import hashlib
import hmac
import os
import subprocess

from conftest import BINARY
from raw_client import RawClient, connect, packet, props, string

METHOD = "SCRAM-SHA-256"


def auth_props(data, method=METHOD):
    return props(b"\x15" + string(method), b"\x16" + string(data))


BYTE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
TWO = {0x13, 0x21, 0x22, 0x23}
FOUR = {0x02, 0x11, 0x18, 0x27}


def vbi_at(data, i):
    value, shift = 0, 0
    while True:
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        shift += 7
        if not b & 0x80:
            return value, i


def parse_props(body):
    """{identifier: value} of an MQTT 5.0 properties block, each identifier's wire type read as
    the specification's table gives it (strings and binary data as bytes)."""
    length, i = vbi_at(body, 0)
    block, result, j = body[i:i + length], {}, 0
    while j < len(block):
        ident = block[j]
        j += 1
        if ident in BYTE:
            result[ident], j = block[j], j + 1
        elif ident in TWO:
            result[ident], j = int.from_bytes(block[j:j + 2], "big"), j + 2
        elif ident in FOUR:
            result[ident], j = int.from_bytes(block[j:j + 4], "big"), j + 4
        elif ident == 0x0B:
            result[ident], j = vbi_at(block, j)
        elif ident == 0x26:  # user property: two strings
            n = int.from_bytes(block[j:j + 2], "big")
            m = int.from_bytes(block[j + 2 + n:j + 4 + n], "big")
            j += 4 + n + m
        else:  # UTF-8 string or binary data
            n = int.from_bytes(block[j:j + 2], "big")
            result[ident], j = block[j + 2:j + 2 + n], j + 2 + n
    return result


class Scram:
    """The client side of SCRAM-SHA-256."""

    def __init__(self, username, password):
        self.username, self.password = username, password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n={username},r={self.nonce}"

    def client_first(self):
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first):
        attributes = dict(part.split("=", 1) for part in server_first.decode().split(","))
        assert attributes["r"].startswith(self.nonce)
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(attributes["s"]), int(attributes["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attributes['r']}"
        self.auth_message = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(stored_key, self.auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.server_key = hmac.digest(salted, b"Server Key", "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def server_signature_ok(self, server_final):
        expected = base64.b64encode(hmac.digest(self.server_key, self.auth_message, "sha256")).decode()
        return server_final.decode() == f"v={expected}"


def add_user(store, name, password):
    result = subprocess.run([BINARY, "ctl", "users", "add", name, "--password", password, *store.args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def scram_connect(broker, username, password, client_id="scram"):
    """Runs the exchange; returns (client, scram, CONNACK body)."""
    client = RawClient(broker)
    scram = Scram(username, password)
    client.send(connect(client_id, version=5, properties=auth_props(scram.client_first())))
    first, body = client.read_packet()
    if first == 0x20:
        return client, scram, body  # refused at once
    assert first == 0xF0 and body[0] == 0x18  # AUTH, Continue authentication
    server_first = parse_props(body[1:])[0x16]
    client.send(packet(0xF0, b"\x18", auth_props(scram.client_final(server_first))))
    first, body = client.read_packet()
    assert first == 0x20
    return client, scram, body


def test_scram_sign_in_and_re_authentication(store, broker_factory):
    add_user(store, "sensor,1", "correct horse")  # a "," in the name travels as "=2C"
    broker = broker_factory(config_text='[auth]\nallow_anonymous = "false"\n', extra_args=store.args)

    client = RawClient(broker)
    scram = Scram("sensor=2C1", "correct horse")
    client.send(connect("scram-ok", version=5, properties=auth_props(scram.client_first())))
    first, body = client.read_packet()
    assert first == 0xF0 and body[0] == 0x18
    client.send(packet(0xF0, b"\x18", auth_props(scram.client_final(parse_props(body[1:])[0x16]))))
    first, body = client.read_packet()
    assert (first, body[:2]) == (0x20, b"\x00\x00")  # CONNACK Success
    properties = parse_props(body[2:])
    assert properties[0x15] == METHOD.encode()  # the method, echoed in CONNACK
    assert scram.server_signature_ok(properties[0x16])  # the server proved it knows the credentials

    # Re-authentication [MQTT-4.12.1]: AUTH 0x19, a new exchange, AUTH 0x00 with the signature.
    again = Scram("sensor=2C1", "correct horse")
    client.send(packet(0xF0, b"\x19", auth_props(again.client_first())))
    first, body = client.read_packet()
    assert first == 0xF0 and body[0] == 0x18
    client.send(packet(0xF0, b"\x18", auth_props(again.client_final(parse_props(body[1:])[0x16]))))
    first, body = client.read_packet()
    assert first == 0xF0 and body[0] == 0x00
    assert again.server_signature_ok(parse_props(body[1:])[0x16])
    client.send(packet(0xC0, b""))  # PINGREQ: still connected
    assert client.read_packet() == (0xD0, b"")


def test_scram_refusals(store, broker_factory):
    add_user(store, "meter", "right")
    broker = broker_factory(config_text='[auth]\nallow_anonymous = "false"\n', extra_args=store.args)

    _, _, body = scram_connect(broker, "meter", "wrong")
    assert body[1] == 0x86  # Bad User Name or Password
    _, _, body = scram_connect(broker, "nobody", "right")  # unknown: the same answer, at the same step
    assert body[1] == 0x86

    client = RawClient(broker)
    client.send(connect("other-method", version=5, properties=auth_props(b"x", method="KERBEROS")))
    first, body = client.read_packet()
    assert (first, body[1]) == (0x20, 0x8C)  # Bad authentication method [MQTT-4.12.0-1]

    # Only AUTH or DISCONNECT may come before the CONNACK of an enhanced authentication.
    client = RawClient(broker)
    client.send(connect("eager", version=5, properties=auth_props(Scram("meter", "right").client_first())))
    assert client.read_packet()[0] == 0xF0
    client.send(packet(0x30, string("t"), b"\x00", b"x"))  # a PUBLISH instead of AUTH
    first, body = client.read_packet()
    assert (first, body[1]) == (0x20, 0x82)  # Protocol Error


def test_auth_without_method_is_a_protocol_error(broker):
    """[MQTT-4.12.0-7] AUTH from a client whose CONNECT named no method."""
    client = RawClient(broker)
    client.send(connect("plain", version=5))
    assert client.read_packet()[0] == 0x20
    client.send(packet(0xF0, b"\x19", auth_props(b"n,,n=x,r=y")))
    first, body = client.read_packet()
    assert (first, body[0]) == (0xE0, 0x82)  # DISCONNECT Protocol Error
