"""Users and passwords (`starling ctl users`, kept in the store, salted PBKDF2) with paho-mqtt
and mosquitto_pub on both stores; anonymous access by auth.allow_anonymous; users added or
deleted while the broker runs take effect without a restart."""
import subprocess
import time

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from conftest import BINARY
from mqtt_helpers import TIMEOUT, Client
from raw_client import RawClient, packet, string

NO_ANONYMOUS = '[auth]\nallow_anonymous = "false"\n'


def ctl(store, *args, stdin=None):
    return subprocess.run([BINARY, "ctl", "users", *args, *store.args], input=stdin, capture_output=True, text=True, timeout=60)


def connack(broker, protocol, username=None, password=None):
    """The CONNACK reason of a connection attempt (a ReasonCode for 5.0, the 3.1.1 return code)."""
    c = Client(broker, client_id=f"auth-{time.monotonic_ns()}", protocol=protocol, username=username, password=password)
    _, rc, _ = c.connect(expect_success=False)
    c.client.disconnect()
    c.client.loop_stop()
    return rc.value if isinstance(rc, ReasonCode) else rc


def raw_connack(broker, username=None, password=None):
    """A 3.1.1 CONNECT sent byte by byte; the CONNACK read back (type byte, body)."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    fields = string("raw-auth") + (string(username) if username is not None else b"") + (string(password) if password is not None else b"")
    raw = RawClient(broker)
    raw.send(packet(0x10, string("MQTT"), bytes([4, flags]), b"\x00\x3C", fields))
    return raw.read_packet()


def test_users_and_passwords_on_each_store(store, broker_factory):
    assert ctl(store, "add", "alice", stdin="s3cret\n").returncode == 0
    assert ctl(store, "add", "bob", "--password", "hunter2").returncode == 0
    listed = ctl(store, "list")
    assert listed.stdout.split() == ["alice", "bob"]
    # The store keeps a salted hash, never the password.
    hashes = store.query("SELECT password_hash FROM users ORDER BY username")
    assert all(h[0].startswith("$pbkdf2-sha512$i=210000$") and "s3cret" not in h[0] for h in hashes)

    broker = broker_factory(config_text=NO_ANONYMOUS, extra_args=store.args)
    assert connack(broker, mqtt.MQTTv5, "alice", "s3cret") == 0x00
    assert connack(broker, mqtt.MQTTv5, "alice", "wrong") == 0x86      # Bad User Name or Password
    assert connack(broker, mqtt.MQTTv5, "mallory", "s3cret") == 0x86
    assert connack(broker, mqtt.MQTTv5) == 0x87                         # Not authorized: anonymous
    assert connack(broker, mqtt.MQTTv311, "bob", "hunter2") == 0
    # 3.1.1 return codes on the wire: 4 bad user name or password, 5 not authorized.
    assert raw_connack(broker, username="bob", password="nope") == (0x20, b"\x00\x04")
    assert raw_connack(broker) == (0x20, b"\x00\x05")

    sub = Client.connected(broker, client_id="auth-sub", protocol=mqtt.MQTTv5, username="alice", password="s3cret")
    sub.subscribe("auth/#", qos=1)
    result = subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-u", "bob", "-P", "hunter2",
                             "-t", "auth/m", "-m", "signed in", "-q", "1"], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert sub.message().payload == b"signed in"
    refused = subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-u", "bob", "-P", "bad",
                              "-t", "auth/m", "-m", "x"], capture_output=True, text=True, timeout=TIMEOUT)
    assert refused.returncode != 0
    sub.disconnect()


def test_packets_sent_before_the_connack_wait_for_the_password_check(store, broker_factory):
    """A client may send packets right after CONNECT; while its password is hashed they wait,
    and are then handled in order: SUBACK, then its own QoS 1 message and the PUBACK."""
    assert ctl(store, "add", "carol", "--password", "pw").returncode == 0
    broker = broker_factory(config_text=NO_ANONYMOUS, extra_args=store.args)
    raw = RawClient(broker)
    connect = packet(0x10, string("MQTT"), bytes([4, 0xC2]), b"\x00\x3C", string("eager"), string("carol"), string("pw"))
    subscribe = packet(0x82, b"\x00\x01", string("eager/#"), b"\x01")
    publish = packet(0x32, string("eager/x"), b"\x00\x02", b"hello")
    raw.send(connect + subscribe + publish)  # one write
    assert raw.read_packet() == (0x20, b"\x00\x00")
    assert raw.read_packet() == (0x90, b"\x00\x01\x01")
    rest = {raw.read_packet()[0] & 0xF0, raw.read_packet()[0] & 0xF0}
    assert rest == {0x30, 0x40}  # the message to itself and the PUBACK


def test_users_added_and_deleted_while_running(store, broker_factory):
    broker = broker_factory(config_text=NO_ANONYMOUS, extra_args=store.args)
    assert connack(broker, mqtt.MQTTv5, "dave", "pw") == 0x87  # no users yet: counted as anonymous

    assert ctl(store, "add", "dave", "--password", "pw").returncode == 0
    wait_for(lambda: connack(broker, mqtt.MQTTv5, "dave", "pw") == 0x00)
    assert connack(broker, mqtt.MQTTv5, "dave", "other") == 0x86

    assert ctl(store, "add", "erin", "--password", "e").returncode == 0  # users remain, so names are checked
    assert ctl(store, "delete", "dave").returncode == 0
    wait_for(lambda: connack(broker, mqtt.MQTTv5, "dave", "pw") == 0x86)
    missing = ctl(store, "delete", "dave")
    assert missing.returncode != 0 and "no user dave" in missing.stderr


def test_anonymous_allowed_on_loopback_listeners_by_default(store, broker_factory):
    """The default, auth.allow_anonymous = "loopback": this listener is on 127.0.0.1."""
    assert ctl(store, "add", "frank", "--password", "f").returncode == 0
    broker = broker_factory(extra_args=store.args)
    assert connack(broker, mqtt.MQTTv5) == 0x00
    assert connack(broker, mqtt.MQTTv5, "frank", "wrong") == 0x86  # a given user name is still checked


def wait_for(condition):
    """Users are read again every 2 s: waits for the broker to see the change (deadline-bound)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the broker did not pick the user change up"
        time.sleep(0.2)


def test_rounds_are_chosen_per_user(store, broker_factory):
    """`ctl users add --rounds`: fewer PBKDF2 rounds for devices with random secrets; the hash
    records them; out-of-range values are refused naming what is allowed."""
    assert ctl(store, "add", "device-7", "--password", "9f2c4e1a7b3d5f60", "--rounds", "1000").returncode == 0
    hashes = store.query("SELECT password_hash FROM users WHERE username = 'device-7'")
    assert hashes[0][0].startswith("$pbkdf2-sha512$i=1000$")
    broker = broker_factory(config_text=NO_ANONYMOUS, extra_args=store.args)
    assert connack(broker, mqtt.MQTTv5, "device-7", "9f2c4e1a7b3d5f60") == 0x00
    refused = ctl(store, "add", "device-8", "--password", "x", "--rounds", "10")
    assert refused.returncode != 0 and "1000 to 10,000,000" in refused.stderr
