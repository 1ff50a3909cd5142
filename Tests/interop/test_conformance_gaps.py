"""Three gaps closed together, each end to end against the built broker:

1. MQTT 3.1 / 3.1.1: a CONNECT that does not conform to section 3.1 is answered by closing the
   network connection WITHOUT a CONNACK [MQTT-3.1.4-1] (raw packets); a client identifier that is
   not valid UTF-8 may instead get return code 0x02, never 0x03 (which tells a device to retry the
   same bytes forever). 5.0 is unchanged: CONNACK 0x81, then close.
2. Lingering close: a client that keeps writing after its violation still reads the broker's
   DISCONNECT reason (0x93 Receive Maximum exceeded, 0x95 Packet too large).
3. Anonymous access (auth.allow_anonymous = "loopback", the default) is decided by the
   listener's configured address (0.0.0.0 is not loopback, even for a client or a proxy that
   reaches it through 127.0.0.1), and behind the PROXY protocol by the address the balancer
   announced, never by the balancer's own.
"""
import ipaddress
import socket
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest

import raw_client as raw
from conftest import BINARY
from mqtt_helpers import TIMEOUT
from test_auth import connack
from test_haproxy import Through, haproxy_factory  # noqa: F401 (the fixture)

CONNACK = 0x20
PUBREC = 0x50
PINGRESP = 0xD0
DISCONNECT = 0xE0
PINGREQ = b"\xC0\x00"


# ---- Reading a connection to its end -----------------------------------------------------------

def read_to_end(sock, timeout=TIMEOUT):
    """Everything the broker sends until it closes: (bytes, reset). ECONNRESET ends the stream
    like an orderly close, keeping what was read before it. A broker that keeps the connection
    open longer than `timeout` fails the test."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, True
        except socket.timeout:
            raise AssertionError(f"the broker did not close the connection within {timeout} s; "
                                 f"received {data[:64].hex(' ')}{' …' if len(data) > 64 else ''}") from None
        if not chunk:
            return data, False
        data += chunk


def split_packets(data):
    """The whole packets of a byte stream as [(first byte, body)], and any incomplete rest."""
    packets, pos = [], 0
    while pos < len(data):
        try:
            length, start = raw.read_vbi(data, pos + 1)
        except IndexError:
            break
        if start + length > len(data):
            break
        packets.append((data[pos], bytes(data[start:start + length])))
        pos = start + length
    return packets, bytes(data[pos:])


def read_one_packet(sock):
    """Reads exactly one packet (the broker has sent nothing else yet): (first byte, body)."""
    data = b""
    while True:
        packets, _ = split_packets(data)
        if packets:
            return packets[0]
        chunk = sock.recv(1)  # byte by byte: nothing after the packet is consumed
        if not chunk:
            raise ConnectionError(f"closed after {data.hex(' ')!r}")
        data += chunk


def wait_for_log_line(broker, *parts, timeout=TIMEOUT):
    """Waits until one line of the broker's log holds every one of `parts`."""
    deadline = time.monotonic() + timeout
    while True:
        if any(all(p in line for p in parts) for line in broker.log().splitlines()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line with {parts} within {timeout} s:\n{broker.log()[-2000:]}")
        time.sleep(0.02)  # polling a file that has no change notification; not a timing assumption


# ---- 1. CONNECT validation in 3.1 / 3.1.1 --------------------------------------------------------

@pytest.fixture
def patient_broker(broker_factory):
    """connect_timeout = 60: a close within the tests' 10 s can only answer the bad CONNECT, never
    the broker giving up on a connection that sent nothing it understood."""
    return broker_factory(config_text="[mqtt]\nconnect_timeout = 60\n")


def connect_3x(flags, payload, version=4, keepalive=60):
    """A 3.1 (level 3, "MQIsdp") or 3.1.1 (level 4, "MQTT") CONNECT with exactly these flags and
    payload bytes; the Remaining Length always matches the bytes sent."""
    name = "MQIsdp" if version == 3 else "MQTT"
    return raw.packet(0x10, raw.string(name), bytes([version, flags]), keepalive.to_bytes(2, "big"), payload)


def exchange(broker, data):
    """Sends `data` on a new connection; returns what the broker sent until it closed."""
    with socket.create_connection((broker.host, broker.port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        received, _ = read_to_end(sock)
    return received


def assert_still_accepts(broker):
    """The broker survived (a crash would also close without CONNACK) and accepts a good CONNECT."""
    assert broker.process.poll() is None, broker.log()[-2000:]
    with socket.create_connection((broker.host, broker.port), timeout=TIMEOUT) as sock:
        sock.sendall(connect_3x(0x02, raw.string("after-the-bad-one")))
        assert read_one_packet(sock) == (CONNACK, b"\x00\x00")


CLEAN = 0x02
WILL = 0x04
WILL_QOS_1 = 0x08
WILL_QOS_3 = 0x18
WILL_RETAIN = 0x20
PASSWORD = 0x40

INVALID_CONNECTS_V311 = [
    pytest.param(CLEAN | 0x01, raw.string("reserved"), id="MQTT-3.1.2-3-reserved-flag"),
    pytest.param(CLEAN | WILL_QOS_1, raw.string("qos-no-will"), id="MQTT-3.1.2-11-13-will-qos-without-will-flag"),
    pytest.param(CLEAN | WILL_RETAIN, raw.string("retain-no-will"), id="MQTT-3.1.2-11-15-will-retain-without-will-flag"),
    pytest.param(CLEAN | WILL | WILL_QOS_3, raw.string("will-qos-3") + raw.string("will/t") + raw.string("bye"),
                 id="MQTT-3.1.2-14-will-qos-3"),
    pytest.param(CLEAN | PASSWORD, raw.string("pw-no-user") + raw.string("secret"), id="MQTT-3.1.2-22-password-without-user-name"),
    pytest.param(CLEAN, b"\x00\x20" + b"short", id="MQTT-3.1.3-3-client-id-past-the-end"),
]


@pytest.mark.parametrize("flags, payload", INVALID_CONNECTS_V311)
def test_mqtt_3_1_4_1_v311_nonconforming_connect_closed_without_connack(patient_broker, flags, payload):
    """[MQTT-3.1.4-1] 3.1.1: the server validates the CONNECT and, if it does not conform to
    section 3.1, closes the network connection without sending a CONNACK. Each case breaks one
    rule of the connect flags or the payload: reserved flag 1 [MQTT-3.1.2-3]; Will QoS 1 without
    the Will Flag [MQTT-3.1.2-11] [MQTT-3.1.2-13]; Will Retain without the Will Flag
    [MQTT-3.1.2-11] [MQTT-3.1.2-15]; Will Flag with Will QoS 3 [MQTT-3.1.2-14]; Password Flag
    without User Name Flag [MQTT-3.1.2-22]; a Client Identifier whose declared length runs past
    the end of the packet [MQTT-3.1.3-3]. Nothing at all is sent before the close (a CONNACK is
    the first packet a server may send, [MQTT-3.2.0-1]); the broker keeps serving others."""
    received = exchange(patient_broker, connect_3x(flags, payload))
    assert received == b"", f"expected a close without CONNACK, received {received.hex(' ')}"
    assert_still_accepts(patient_broker)


def test_mqtt_3_1_4_1_v31_reserved_flag_closed_without_connack(patient_broker):
    """[MQTT-3.1.4-1] MQTT 3.1 ("MQIsdp", level 3) is validated like 3.1.1: a CONNECT with the
    reserved connect flag set closes the connection without a CONNACK."""
    received = exchange(patient_broker, connect_3x(CLEAN | 0x01, raw.string("reserved31"), version=3))
    assert received == b"", f"expected a close without CONNACK, received {received.hex(' ')}"
    assert_still_accepts(patient_broker)


@pytest.mark.parametrize("client_id", [
    pytest.param(b"bad\xFFid", id="byte-0xFF"),
    pytest.param(b"bad\x00id", id="U+0000"),
    pytest.param(b"bad\xED\xA0\x80id", id="surrogate-U+D800"),
    pytest.param(b"bad\xC0\x80id", id="overlong-C0-80"),
])
def test_mqtt_3_1_3_4_v311_client_id_not_utf8_never_server_unavailable(patient_broker, client_id):
    """[MQTT-3.1.3-4] The Client Identifier is a UTF-8 encoded string; ill-formed UTF-8 (a byte
    0xFF, an overlong encoding, a UTF-16 surrogate) [MQTT-1.5.3-1] and U+0000 [MQTT-1.5.3-2] are
    not. The broker either closes without a CONNACK [MQTT-3.1.4-1] or answers return code 0x02
    (identifier rejected) and closes; never 0x03 (server unavailable), which invites the device
    to retry the same bytes forever."""
    received = exchange(patient_broker, connect_3x(CLEAN, raw.string(client_id)))
    assert received in (b"", bytes([CONNACK, 0x02, 0x00, 0x02])), \
        f"expected a close without CONNACK or CONNACK 0x02, received {received.hex(' ')}"
    assert_still_accepts(patient_broker)


def test_mqtt_3_1_2_3_v5_reserved_flag_gets_connack_0x81(patient_broker):
    """[MQTT-3.1.2-3] 5.0 is unchanged: a CONNECT with the reserved flag set is a Malformed
    Packet, answered CONNACK 0x81 (Session Present 0) before the close (section 4.13); no
    existing test sent a 5.0 CONNECT with the reserved flag."""
    client = raw.RawClient(patient_broker)
    client.send(raw.connect("reserved-v5", version=5, flags=CLEAN | 0x01))
    packets = client.read_until_closed()
    assert [(first, body[:2]) for first, body in packets] == [(CONNACK, b"\x00\x81")], packets
    assert_still_accepts(patient_broker)


# ---- 2. Lingering close -------------------------------------------------------------------------

# Bytes the client sends after its violation: under the 64 KiB the broker reads and discards.
EXTRA_AFTER_VIOLATION = 48 * 1024
# PINGREQs sent before the violation in the "window closed" shape: 8 KiB of PINGRESP the client
# does not read, far more than its receive window.
PINGS_BEFORE = 4096


def connected_v5(broker, client_id, small_window=False):
    """A raw 5.0 connection after a successful CONNECT (Clean Start); only the CONNACK is read.
    `small_window`: the socket's receive buffer is the kernel's minimum (set before connecting,
    so the advertised window stays a few KiB)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small_window:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    sock.settimeout(TIMEOUT)
    sock.connect((broker.host, broker.port))
    sock.sendall(raw.connect(client_id, version=5, flags=CLEAN))
    first, body = read_one_packet(sock)
    assert (first, body[1]) == (CONNACK, 0x00), f"CONNACK {first:#04x} {body!r}"
    return sock


def send_all(sock, data):
    """sendall; a reset or broken pipe is returned (the test then shows what could be read)."""
    try:
        sock.sendall(data)
    except OSError as error:
        return error
    return None


def run_violation(broker, client_id, shape, violation, rest):
    """Sends `violation` then `rest` (more packets, EXTRA_AFTER_VIOLATION bytes in all) in one of
    two shapes, then reads to the end; returns (packets, incomplete tail, reset, send error).

    - "one_write": one sendall of both, read at once. On Linux loopback this one passes even
      against a broker that closes at once: the DISCONNECT is already in the client's receive
      queue when the reset arrives, and Linux still hands queued data out before ECONNRESET.
    - "window_closed": the client's receive window is first filled with PINGRESPs it does not
      read (PINGS_BEFORE PINGREQs ahead of the violation), so the DISCONNECT waits in the broker's
      send queue; once the broker has logged the violation the client sends `rest`. A broker
      that closed at once answers those bytes with a reset, and a reset discards its unsent
      queue: the DISCONNECT never leaves. With the lingering close (write side shut down, what
      arrives read and discarded) the queue drains as the client reads, DISCONNECT then EOF.
    """
    if shape == "one_write":
        sock = connected_v5(broker, client_id)
        error = send_all(sock, violation + rest)
    else:
        sock = connected_v5(broker, client_id, small_window=True)
        error = send_all(sock, PINGREQ * PINGS_BEFORE + violation)
        wait_for_log_line(broker, "disconnecting client", client_id)
        error = send_all(sock, rest) or error
    try:
        stream, reset = read_to_end(sock)
    finally:
        sock.close()
    packets, tail = split_packets(stream)
    return packets, tail, reset, error


def assert_ends_with_disconnect(packets, tail, reset, error, reason, allowed_before):
    """The stream is whole packets, the last one DISCONNECT `reason`, nothing after it
    [MQTT-3.14.4-1]; before it only `allowed_before` packet types."""
    kinds = {}
    for first, _ in packets:
        kinds[first] = kinds.get(first, 0) + 1
    seen = f"packets by type {({f'{k:#04x}': n for k, n in kinds.items()})}, reset={reset}, send error={error!r}"
    assert packets and packets[-1][0] == DISCONNECT, f"no DISCONNECT read before the connection ended: {seen}"
    assert packets[-1][1][:1] == bytes([reason]), f"DISCONNECT {packets[-1][1][:1].hex()}, expected {reason:#04x}: {seen}"
    assert tail == b"", f"bytes after the DISCONNECT: {tail[:32].hex(' ')}"
    assert {first for first, _ in packets[:-1]} <= allowed_before, seen


SHAPES = ["one_write", "window_closed"]


@pytest.mark.parametrize("shape", SHAPES)
def test_mqtt_3_3_4_9_receive_maximum_disconnect_read_by_a_client_still_writing(broker_factory, shape):
    """[MQTT-3.3.4-9] (3.2.2.3.3) With receive_maximum = 2, a third QoS 2 PUBLISH awaiting PUBREL
    gets DISCONNECT 0x93 - and the client reads it although it went on writing ~48 KiB of
    packets after the violation (a real device does not stop to listen between packets).

    Without a lingering close, the broker closes its socket with those bytes unread, the kernel
    answers with a reset instead of an orderly close, and the reset loses the DISCONNECT: it
    discards the broker's unsent data, and many client stacks drop received data they have not
    read yet. With it, the broker shuts its write side down, reads and discards for up to 2 s or
    64 KiB, then closes. See `run_violation` for the two shapes and which of them Linux loopback
    needs to show the loss."""
    broker = broker_factory(config_text="[mqtt]\nreceive_maximum = 2\n")
    violation = b"".join(raw.publish("linger/rm", b"x", qos=2, packet_id=i) for i in (1, 2, 3))
    rest = PINGREQ * (EXTRA_AFTER_VIOLATION // len(PINGREQ))
    packets, tail, reset, error = run_violation(broker, f"linger-rm-{shape}", shape, violation, rest)
    assert_ends_with_disconnect(packets, tail, reset, error, 0x93, allowed_before={PUBREC, PINGRESP})


@pytest.mark.parametrize("shape", SHAPES)
def test_mqtt_3_2_2_15_packet_too_large_disconnect_read_by_a_client_still_writing(broker_factory, shape):
    """[MQTT-3.2.2-15] With max_packet_size = 1024, a PUBLISH whose fixed header declares 4096
    bytes is refused from the header alone (before its body is buffered): DISCONNECT 0x95 - read
    by the client although it goes on to send that body and more, ~48 KiB in all. Without a
    lingering close those unread bytes make the broker's kernel reset the connection and the
    DISCONNECT is lost (see the receive-maximum test and `run_violation`)."""
    broker = broker_factory(config_text="[mqtt]\nmax_packet_size = 1024\n")
    big = raw.publish("linger/big", b"x" * (4096 - 2 - len("linger/big") - 1))  # body of exactly 4096
    assert big[:3] == b"\x30\x80\x20", big[:3].hex(" ")  # PUBLISH, Remaining Length 4096
    violation, body = big[:3], big[3:]
    rest = body + PINGREQ * ((EXTRA_AFTER_VIOLATION - len(body)) // len(PINGREQ))
    packets, tail, reset, error = run_violation(broker, f"linger-big-{shape}", shape, violation, rest)
    assert_ends_with_disconnect(packets, tail, reset, error, 0x95, allowed_before={PINGRESP})


# ---- 3. Anonymous access by the listener's address -------------------------------------------------

NOT_AUTHORIZED_V5 = 0x87
NOT_AUTHORIZED_V311 = 5


def add_user(data_dir, name, password):
    """`starling ctl users add` into the SQLite store in `data_dir` (few rounds: a test)."""
    result = subprocess.run([BINARY, "ctl", "users", "add", name, "--password", password, "--rounds", "1000",
                             "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def first_packet(host, port, data):
    """Sends `data` on a new connection; returns the first packet the broker answers."""
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        return read_one_packet(sock)


def connect_v311(client_id, username=None, password=None):
    flags = CLEAN | (0x80 if username is not None else 0) | (PASSWORD if password is not None else 0)
    payload = raw.string(client_id)
    if username is not None:
        payload += raw.string(username)
    if password is not None:
        payload += raw.string(password)
    return connect_3x(flags, payload)


def mosquitto_pub(broker, version):
    """mosquitto_pub without a user name (-d prints the CONNACK's code); the finished process."""
    return subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", version, "-d",
                           "-i", f"anon-{version}", "-t", "anon/t", "-m", "x"],
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_mqtt_3_1_4_2_anonymous_refused_on_a_wildcard_listener(broker_factory):
    """[MQTT-3.1.4-2] (3.1.1: return code 5, then close [MQTT-3.2.2-5]) A listener on 0.0.0.0 is
    not loopback, even for a client that reaches it through 127.0.0.1: with the default
    auth.allow_anonymous = "loopback", clients without a user name are refused - CONNACK 0x87
    (5.0), return code 5 (3.1.1) - with paho, mosquitto_pub and raw packets. There are no users,
    so user names are not checked and every client counts as anonymous (README), a named one
    too."""
    broker = broker_factory(mqtt_listen="0.0.0.0:0")
    assert connack(broker, mqtt.MQTTv5) == NOT_AUTHORIZED_V5
    assert connack(broker, mqtt.MQTTv311) == NOT_AUTHORIZED_V5  # paho 2 reports 3.1.1 code 5 as 0x87; raw below
    assert connack(broker, mqtt.MQTTv5, "someone", "pw") == NOT_AUTHORIZED_V5  # no users: anonymous
    assert first_packet(broker.host, broker.port, connect_v311("raw-anon")) == (CONNACK, bytes([0, NOT_AUTHORIZED_V311]))
    for version, code in (("mqttv311", NOT_AUTHORIZED_V311), ("mqttv5", NOT_AUTHORIZED_V5)):
        result = mosquitto_pub(broker, version)
        assert result.returncode != 0, result.stdout + result.stderr
        assert f"received CONNACK ({code})" in result.stdout + result.stderr, result.stdout + result.stderr


def test_mqtt_3_1_4_2_wildcard_listener_admits_users_refuses_anonymous(broker_factory, tmp_path):
    """[MQTT-3.1.4-2] The same 0.0.0.0 listener with a user in the store: that user signs in
    (the listener works), a client without a user name is still refused 0x87 / 5."""
    add_user(tmp_path, "device-1", "pw-1")
    broker = broker_factory(mqtt_listen="0.0.0.0:0", extra_args=["--data-dir", str(tmp_path)])
    assert connack(broker, mqtt.MQTTv5, "device-1", "pw-1") == 0x00
    assert connack(broker, mqtt.MQTTv311, "device-1", "pw-1") == 0
    assert connack(broker, mqtt.MQTTv5) == NOT_AUTHORIZED_V5
    assert first_packet(broker.host, broker.port, connect_v311("raw-anon")) == (CONNACK, bytes([0, NOT_AUTHORIZED_V311]))


def test_mqtt_3_1_4_2_wildcard_listener_with_allow_anonymous_true(broker_factory):
    """[MQTT-3.1.4-2] With auth.allow_anonymous = "true", clients without a user name are admitted
    on 0.0.0.0 too: the refusals above come from the "loopback" rule, not from the wildcard
    listener itself."""
    broker = broker_factory(config_text='[auth]\nallow_anonymous = "true"\n', mqtt_listen="0.0.0.0:0")
    assert connack(broker, mqtt.MQTTv5) == 0x00
    assert first_packet(broker.host, broker.port, connect_v311("raw-anon")) == (CONNACK, b"\x00\x00")


def test_mqtt_3_1_4_2_anonymous_refused_behind_a_local_proxy_without_proxy_protocol(broker_factory, haproxy_factory, tmp_path):
    """[MQTT-3.1.4-2] A local HAProxy (no send-proxy) in front of a 0.0.0.0 listener without
    mqtt.proxy_protocol: every connection the broker sees comes from the proxy's 127.0.0.1, and
    that must not make anonymous clients local. Through the proxy a client without a user name
    is refused (0x87 / 5); a user signs in (the path through the proxy works)."""
    add_user(tmp_path, "device-1", "pw-1")
    broker = broker_factory(mqtt_listen="0.0.0.0:0", extra_args=["--data-dir", str(tmp_path)], http=True)
    haproxy = haproxy_factory(broker, send_proxy=False)
    haproxy.wait_for_state("UP")
    through = Through(haproxy)
    assert connack(through, mqtt.MQTTv5, "device-1", "pw-1") == 0x00
    assert connack(through, mqtt.MQTTv5) == NOT_AUTHORIZED_V5
    assert first_packet(through.host, haproxy.port, connect_v311("raw-anon")) == (CONNACK, bytes([0, NOT_AUTHORIZED_V311]))


PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(source, source_port=40000, destination_port=1883):
    """A PROXY protocol v2 header (command PROXY, TCP) announcing `source` (IPv4 or IPv6)."""
    ip = ipaddress.ip_address(source)
    destination = ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
    family = 0x11 if ip.version == 4 else 0x21
    block = ip.packed + destination.packed + source_port.to_bytes(2, "big") + destination_port.to_bytes(2, "big")
    return PROXY_V2_SIGNATURE + bytes([0x21, family]) + len(block).to_bytes(2, "big") + block


def proxy_v1(source, source_port=40000, destination_port=1883):
    """A PROXY protocol v1 line announcing the IPv4 `source`."""
    return f"PROXY TCP4 {source} 127.0.0.1 {source_port} {destination_port}\r\n".encode()


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "0.0.0.0:0"])
def test_mqtt_3_1_4_2_behind_proxy_protocol_the_announced_address_decides(broker_factory, listen):
    """[MQTT-3.1.4-2] On a listener with mqtt.proxy_protocol = true, anonymous access follows the
    client address the balancer announced, never the balancer's own connection (here the test
    itself, on 127.0.0.1) nor the listener's address: on a 127.0.0.1 and on a 0.0.0.0 listener
    alike, an announced 203.0.113.7 or 2001:db8::7 is refused (3.1.1 return code 5, 5.0 0x87)
    and an announced 127.0.0.1 or ::1 is admitted. Headers are written by hand (v2 and v1)."""
    broker = broker_factory(config_text="[mqtt]\nproxy_protocol = true\n", mqtt_listen=listen)
    cases = {
        "v2 203.0.113.7": proxy_v2("203.0.113.7"),
        "v2 2001:db8::7": proxy_v2("2001:db8::7"),
        "v1 203.0.113.7": proxy_v1("203.0.113.7"),
        "v2 127.0.0.1": proxy_v2("127.0.0.1"),
        "v2 ::1": proxy_v2("::1"),
        "v1 127.0.0.1": proxy_v1("127.0.0.1"),
    }
    answers = {name: first_packet(broker.host, broker.port, header + connect_v311(f"proxied-{i}"))
               for i, (name, header) in enumerate(cases.items())}
    refused, admitted = (CONNACK, bytes([0, NOT_AUTHORIZED_V311])), (CONNACK, b"\x00\x00")
    assert answers == {
        "v2 203.0.113.7": refused, "v2 2001:db8::7": refused, "v1 203.0.113.7": refused,
        "v2 127.0.0.1": admitted, "v2 ::1": admitted, "v1 127.0.0.1": admitted,
    }
    first, body = first_packet(broker.host, broker.port, proxy_v2("203.0.113.7") + raw.connect("proxied-v5", version=5))
    assert (first, body[1]) == (CONNACK, NOT_AUTHORIZED_V5)


def test_mqtt_3_1_4_2_anonymous_admitted_on_a_loopback_listener(broker_factory, tmp_path):
    """[MQTT-3.1.4-2] The default listener, 127.0.0.1, is loopback: clients without a user name
    are admitted by paho (5.0, 3.1.1), raw packets and mosquitto_pub - without users, and with a
    user in the store too (whose name is then checked when given)."""
    broker = broker_factory()
    assert connack(broker, mqtt.MQTTv5) == 0x00
    assert connack(broker, mqtt.MQTTv311) == 0
    assert first_packet(broker.host, broker.port, connect_v311("raw-anon")) == (CONNACK, b"\x00\x00")
    for version in ("mqttv311", "mqttv5"):
        result = mosquitto_pub(broker, version)
        assert result.returncode == 0, result.stdout + result.stderr

    add_user(tmp_path, "device-1", "pw-1")
    with_user = broker_factory(extra_args=["--data-dir", str(tmp_path)])
    assert connack(with_user, mqtt.MQTTv5) == 0x00
    assert connack(with_user, mqtt.MQTTv5, "device-1", "wrong") == 0x86
    assert first_packet(with_user.host, with_user.port, connect_v311("raw-anon")) == (CONNACK, b"\x00\x00")
