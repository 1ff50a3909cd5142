"""What deploy/ ships works: HAProxy accepts deploy/haproxy.cfg, and a broker starts with
deploy/starling.toml (only its addresses and paths swapped for this machine's) and serves what
it promises: PROXY protocol, then TLS, then MQTT with a password; /readyz 200."""
import socket
import ssl
import subprocess

from conftest import BINARY, ROOT
from raw_client import packet, string
from test_haproxy import HAPROXY
from test_transports import certs  # noqa: F401 (the fixture)

DEPLOY = ROOT / "deploy"


def test_haproxy_accepts_the_shipped_configuration():
    result = subprocess.run([HAPROXY, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def connect_packet(client_id, username, password):
    return packet(0x10, string("MQTT"), bytes([4, 0xC2]), b"\x00\x3C", string(client_id), string(username), string(password))


def read_connack(sock):
    data = b""
    while len(data) < 4:
        chunk = sock.recv(4 - len(data))
        assert chunk, "closed before the CONNACK"
        data += chunk
    return data


def test_a_broker_runs_with_the_shipped_configuration(broker_factory, certs, tmp_path):  # noqa: F811
    text = (DEPLOY / "starling.toml").read_text()
    for old, new in (("0.0.0.0:1883", "127.0.0.1:0"), ("0.0.0.0:8883", "127.0.0.1:0"), ("0.0.0.0:8080", "127.0.0.1:0"),
                     ("0.0.0.0:8083", "127.0.0.1:0"), ("/etc/starling/tls/fullchain.pem", str(certs / "server.pem")),
                     ("/etc/starling/tls/privkey.pem", str(certs / "server.key")), ("/var/lib/starling", str(tmp_path / "data"))):
        assert old in text, old
        text = text.replace(old, new)
    config = tmp_path / "starling.toml"
    config.write_text(text)
    added = subprocess.run([BINARY, "ctl", "users", "add", "device-1", "--config", str(config)], input="pw\n",
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr

    broker = broker_factory(config_text=text, http=True, schemes=("mqtt", "mqtts"))
    assert broker.get("/readyz")[0] == 200

    # Plain MQTT, as HAProxy sends it: the PROXY header first.
    with socket.create_connection(("127.0.0.1", broker.port), timeout=30) as s:
        s.sendall(b"PROXY TCP4 198.51.100.7 10.0.0.11 50123 1883\r\n" + connect_packet("plain", "device-1", "pw"))
        assert read_connack(s) == b"\x20\x02\x00\x00"

    # TLS: the PROXY header, then the TLS handshake, then MQTT.
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with socket.create_connection(("127.0.0.1", broker.ports["mqtts"]), timeout=30) as raw:
        raw.sendall(b"PROXY TCP4 198.51.100.8 10.0.0.11 50124 8883\r\n")
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(connect_packet("tls", "device-1", "pw"))
            assert read_connack(s) == b"\x20\x02\x00\x00"
            s.sendall(packet(0xE0, b""))  # DISCONNECT

    # Anonymous clients are refused (3.1.1 return code 5), even here on loopback.
    with socket.create_connection(("127.0.0.1", broker.port), timeout=30) as s:
        s.sendall(b"PROXY TCP4 198.51.100.9 10.0.0.11 50125 1883\r\n" +
                  packet(0x10, string("MQTT"), bytes([4, 0x02]), b"\x00\x3C", string("anonymous")))
        assert read_connack(s) == b"\x20\x02\x00\x05"
    assert "198.51.100.9" in broker.log()  # the refusal names the device's address, not HAProxy's
