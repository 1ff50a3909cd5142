"""MQTT over TLS (and mutual TLS), WebSocket and secure WebSocket, with paho-mqtt and the
mosquitto clients; the WebSocket rules of MQTT 5.0 section 6 [MQTT-6.0.0-1..4]; bad TLS
configuration refused with exit status 2."""
import base64
import os
import socket
import ssl
import struct
import subprocess
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from conftest import BINARY
from mqtt_helpers import TIMEOUT, Client
from raw_client import connect


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Starling test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=starling-{name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d


def tls_config(certs, listeners, client_ca=False):
    text = "[mqtt]\n" + "".join(f'{key} = ["127.0.0.1:0"]\n' for key in listeners)
    text += f'[tls]\ncertificate = "{certs / "server.pem"}"\nprivate_key = "{certs / "server.key"}"\n'
    if client_ca:
        text += f'client_ca = "{certs / "ca.pem"}"\n'
    return text


def round_trip(broker, sub, publisher_scheme="mqtt", **publisher_kwargs):
    """`sub` (connected) subscribes; a publisher on another listener sends QoS 1; sub gets it."""
    sub.subscribe("transport/#", qos=1)
    pub = Client.connected(broker, client_id="transport-pub", scheme=publisher_scheme, **publisher_kwargs)
    pub.publish("transport/a", b"over the wire", qos=1)
    message = sub.message()
    assert (message.topic, message.payload, message.qos) == ("transport/a", b"over the wire", 1)
    pub.disconnect()


# ---- TLS ---------------------------------------------------------------------------------------

def test_mqtt_over_tls_with_paho_and_mosquitto_pub(broker_factory, certs):
    broker = broker_factory(config_text=tls_config(certs, ["tls_listeners"]), schemes=("mqtt", "mqtts"))
    sub = Client.connected(broker, client_id="tls-sub", protocol=mqtt.MQTTv5, scheme="mqtts", tls={"ca_certs": str(certs / "ca.pem")})
    round_trip(broker, sub, "mqtts", tls={"ca_certs": str(certs / "ca.pem")})

    result = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.ports["mqtts"]), "--cafile", str(certs / "ca.pem"),
                             "-t", "transport/m", "-m", "from mosquitto_pub", "-q", "1"],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert sub.message().payload == b"from mosquitto_pub"
    sub.disconnect()


def test_plain_mqtt_on_the_tls_port_gets_no_connack(broker_factory, certs):
    broker = broker_factory(config_text=tls_config(certs, ["tls_listeners"]), schemes=("mqtt", "mqtts"))
    with socket.create_connection(("127.0.0.1", broker.ports["mqtts"]), timeout=TIMEOUT) as s:
        s.sendall(connect("plain-on-tls", version=4))
        reply = s.recv(64)  # a TLS alert, or the connection closed: never a CONNACK
        assert not reply.startswith(b"\x20\x02")


def test_mutual_tls_requires_a_certificate_signed_by_the_client_ca(broker_factory, certs):
    broker = broker_factory(config_text=tls_config(certs, ["tls_listeners"], client_ca=True), schemes=("mqtt", "mqtts"))
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with socket.create_connection(("127.0.0.1", broker.ports["mqtts"]), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(connect("no-cert", version=4))
                if not s.recv(64):  # TLS 1.3 reports the refused certificate at the first read
                    raise ConnectionError("closed without a CONNACK")

    sub = Client(broker, client_id="mtls-sub", scheme="mqtts",
                 tls={"ca_certs": str(certs / "ca.pem"), "certfile": str(certs / "client.pem"), "keyfile": str(certs / "client.key")})
    sub.connect()
    round_trip(broker, sub)
    sub.disconnect()


# ---- WebSocket ---------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_mqtt_over_websocket(broker_factory, protocol):
    """[MQTT-6.0.0-3, 4] paho offers subprotocol mqtt; the broker selects it."""
    broker = broker_factory(config_text='[mqtt]\nws_listeners = ["127.0.0.1:0"]\n', schemes=("mqtt", "ws"))
    sub = Client.connected(broker, client_id="ws-sub", protocol=protocol, scheme="ws")
    round_trip(broker, sub, "ws", protocol=protocol)
    sub.disconnect()


def test_mqtt_over_secure_websocket(broker_factory, certs):
    broker = broker_factory(config_text=tls_config(certs, ["wss_listeners"]), schemes=("mqtt", "wss"))
    sub = Client.connected(broker, client_id="wss-sub", protocol=mqtt.MQTTv5, scheme="wss", tls={"ca_certs": str(certs / "ca.pem")})
    round_trip(broker, sub)
    sub.disconnect()


def test_websocket_path_is_configurable_and_other_paths_get_404(broker_factory):
    broker = broker_factory(config_text='[mqtt]\nws_listeners = ["127.0.0.1:0"]\nws_path = "/broker"\n', schemes=("mqtt", "ws"))
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"http://127.0.0.1:{broker.ports['ws']}/mqtt", timeout=TIMEOUT)
    assert error.value.code == 404
    assert "/broker" in error.value.read().decode()
    sub = Client.connected(broker, client_id="ws-path", scheme="ws", ws_path="/broker")
    round_trip(broker, sub)
    sub.disconnect()


class RawWebSocket:
    """A minimal WebSocket client (RFC 6455) for frames paho never sends."""

    def __init__(self, port, protocol="mqtt", proxy_header=b""):
        """`proxy_header`: bytes sent before the handshake (a PROXY protocol header)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(proxy_header + (f"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, "closed during the handshake"
            head += chunk
        self.response = head.decode()

    def send(self, opcode, payload):
        mask = os.urandom(4)
        header = bytes([0x80 | opcode]) + (bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + struct.pack(">H", len(payload)))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def frame(self):
        """(opcode, payload) of the next frame from the server (unmasked), or None at the end."""
        def read(n):
            data = b""
            while len(data) < n:
                chunk = self.sock.recv(n - len(data))
                if not chunk:
                    return None
                data += chunk
            return data
        head = read(2)
        if head is None:
            return None
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", read(2))[0]
        return head[0] & 0x0F, read(length)


def test_websocket_packets_split_across_frames_and_text_frames_refused(broker_factory):
    """[MQTT-6.0.0-2] a packet may span frames; [MQTT-6.0.0-1] a text frame closes the
    connection (Close 1003)."""
    broker = broker_factory(config_text='[mqtt]\nws_listeners = ["127.0.0.1:0"]\n', schemes=("mqtt", "ws"))
    ws = RawWebSocket(broker.ports["ws"])
    assert ws.response.startswith("HTTP/1.1 101")
    assert "sec-websocket-protocol: mqtt" in ws.response.lower()
    packet = connect("ws-raw", version=4)
    ws.send(0x2, packet[:5])  # the CONNECT in two binary frames
    ws.send(0x2, packet[5:])
    assert ws.frame() == (0x2, b"\x20\x02\x00\x00")  # CONNACK, accepted

    ws.send(0x9, b"hi")  # ping
    assert ws.frame() == (0xA, b"hi")  # pong

    ws.send(0x1, b"text")
    opcode, payload = ws.frame()
    assert opcode == 0x8 and struct.unpack(">H", payload[:2])[0] == 1003
    assert ws.frame() is None  # then the connection ends


def test_websocket_offering_only_other_subprotocols_is_refused(broker_factory):
    broker = broker_factory(config_text='[mqtt]\nws_listeners = ["127.0.0.1:0"]\n', schemes=("mqtt", "ws"))
    ws = RawWebSocket(broker.ports["ws"], protocol="chat")
    assert ws.response.startswith("HTTP/1.1 404")


# ---- configuration errors ----------------------------------------------------------------------

def serve(tmp_path, config_text):
    path = tmp_path / "starling.toml"
    path.write_text(config_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARLING_")}
    return subprocess.run([BINARY, "serve", "--mqtt", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"), "--config", str(path)],
                          capture_output=True, text=True, timeout=60, env=env)


def test_tls_listener_without_certificate_is_a_configuration_error(tmp_path):
    result = serve(tmp_path, '[mqtt]\ntls_listeners = ["127.0.0.1:0"]\n')
    assert result.returncode == 2
    assert "tls.certificate" in result.stderr and "tls_listeners" in result.stderr


def test_unreadable_certificate_names_the_key_and_the_file(tmp_path, certs):
    missing = tmp_path / "missing.pem"
    result = serve(tmp_path, f'[mqtt]\ntls_listeners = ["127.0.0.1:0"]\n[tls]\ncertificate = "{missing}"\nprivate_key = "{certs / "server.key"}"\n')
    assert result.returncode == 2, result.stderr
    assert "tls.certificate" in result.stderr and str(missing) in result.stderr


def test_key_that_does_not_match_the_certificate_is_refused(tmp_path, certs):
    result = serve(tmp_path, f'[mqtt]\ntls_listeners = ["127.0.0.1:0"]\n[tls]\ncertificate = "{certs / "server.pem"}"\nprivate_key = "{certs / "client.key"}"\n')
    assert result.returncode == 2, result.stderr
    assert "tls.private_key" in result.stderr
