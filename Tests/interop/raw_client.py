"""A raw-packet MQTT client for protocol violations: sends exact bytes, reads whole packets."""
import socket

TIMEOUT = 10


def string(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return len(b).to_bytes(2, "big") + b


def vbi(n):
    out = bytearray()
    while True:
        d = n & 0x7F
        n >>= 7
        if n:
            d |= 0x80
        out.append(d)
        if not n:
            return bytes(out)


def packet(first, *parts):
    body = b"".join(parts)
    return bytes([first]) + vbi(len(body)) + body


def props(*parts):
    body = b"".join(bytes(p) if isinstance(p, (list, tuple)) else p for p in parts)
    return vbi(len(body)) + body


def connect(client_id="raw", version=5, flags=0x02, keepalive=60, properties=b"\x00", payload=None):
    name = "MQIsdp" if version == 3 else "MQTT"
    body = string(name) + bytes([version, flags]) + keepalive.to_bytes(2, "big")
    if version == 5:
        body += properties
    body += payload if payload is not None else string(client_id)
    return packet(0x10, body)


class RawClient:
    def __init__(self, broker):
        self.sock = socket.create_connection((broker.host, broker.port), timeout=TIMEOUT)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk

    def read_packet(self):
        """Returns (first_byte, body) of the next packet; raises ConnectionError on close."""
        self._fill(2)
        length, multiplier, i = 0, 1, 1
        while True:
            self._fill(i + 1)
            byte = self.buffer[i]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            i += 1
            if byte & 0x80 == 0:
                break
        self._fill(i + length)
        first, body = self.buffer[0], self.buffer[i:i + length]
        self.buffer = self.buffer[i + length:]
        return first, body

    def read_until_closed(self):
        """Reads packets until the broker closes the connection; returns them."""
        packets = []
        while True:
            try:
                packets.append(self.read_packet())
            except (ConnectionError, ConnectionResetError):
                return packets

    def close(self):
        self.sock.close()


# --- Decoding helpers (added for the v5 feature and limit tests) ---------------------------

def read_vbi(data, pos=0):
    """Decodes a Variable Byte Integer at `pos`; returns (value, next position)."""
    value, multiplier = 0, 1
    while True:
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) * multiplier
        multiplier *= 128
        if byte & 0x80 == 0:
            return value, pos


# Wire type of each 5.0 property identifier: "byte", "u16", "u32", "vbi", "str", "bin", "pair".
PROPERTY_TYPES = {
    0x01: "byte", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin", 0x0B: "vbi", 0x11: "u32",
    0x12: "str", 0x13: "u16", 0x15: "str", 0x16: "bin", 0x17: "byte", 0x18: "u32", 0x19: "byte",
    0x1A: "str", 0x1C: "str", 0x1F: "str", 0x21: "u16", 0x22: "u16", 0x23: "u16", 0x24: "byte",
    0x25: "byte", 0x26: "pair", 0x27: "u32", 0x28: "byte", 0x29: "byte", 0x2A: "byte",
}


def parse_properties(data, pos=0):
    """Decodes a 5.0 property block at `pos`; returns ([(identifier, value), ...], next position)."""
    length, pos = read_vbi(data, pos)
    end = pos + length
    out = []
    while pos < end:
        ident, pos = read_vbi(data, pos)
        kind = PROPERTY_TYPES[ident]
        if kind == "byte":
            value, pos = data[pos], pos + 1
        elif kind == "u16":
            value, pos = int.from_bytes(data[pos:pos + 2], "big"), pos + 2
        elif kind == "u32":
            value, pos = int.from_bytes(data[pos:pos + 4], "big"), pos + 4
        elif kind == "vbi":
            value, pos = read_vbi(data, pos)
        elif kind in ("str", "bin"):
            n = int.from_bytes(data[pos:pos + 2], "big")
            value, pos = bytes(data[pos + 2:pos + 2 + n]), pos + 2 + n
        else:  # pair
            n = int.from_bytes(data[pos:pos + 2], "big")
            key = bytes(data[pos + 2:pos + 2 + n])
            pos += 2 + n
            n = int.from_bytes(data[pos:pos + 2], "big")
            value, pos = (key, bytes(data[pos + 2:pos + 2 + n])), pos + 2 + n
        out.append((ident, value))
    return out, end


def parse_publish(first, body, version=5):
    """Decodes a PUBLISH: returns a dict with topic, qos, dup, retain, packet_id, properties, payload."""
    assert first >> 4 == 3, f"not a PUBLISH: {first:#04x}"
    qos = (first >> 1) & 3
    n = int.from_bytes(body[0:2], "big")
    topic = bytes(body[2:2 + n])
    pos = 2 + n
    packet_id = None
    if qos:
        packet_id = int.from_bytes(body[pos:pos + 2], "big")
        pos += 2
    properties = []
    if version == 5:
        properties, pos = parse_properties(body, pos)
    return {"topic": topic, "qos": qos, "dup": bool(first & 8), "retain": bool(first & 1),
            "packet_id": packet_id, "properties": properties, "payload": bytes(body[pos:])}


def publish(topic, payload=b"", qos=0, packet_id=1, retain=False, properties=b"\x00", version=5):
    """A PUBLISH packet; `topic` may be bytes (for ill-formed names), `properties` a ready block."""
    first = 0x30 | (qos << 1) | (1 if retain else 0)
    parts = [string(topic)]
    if qos:
        parts.append(packet_id.to_bytes(2, "big"))
    if version == 5:
        parts.append(properties)
    parts.append(payload if isinstance(payload, bytes) else payload.encode())
    return packet(first, *parts)


def subscribe(filter_, options=0, packet_id=1, properties=b"\x00", version=5):
    """A SUBSCRIBE packet with one filter."""
    parts = [packet_id.to_bytes(2, "big")]
    if version == 5:
        parts.append(properties)
    parts += [string(filter_), bytes([options])]
    return packet(0x82, *parts)


def ack(kind, packet_id, version=5):
    """PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70) with reason 0."""
    return bytes([kind, 2]) + packet_id.to_bytes(2, "big")


def connect_v5(broker, client_id="raw", properties=b"\x00", flags=0x02, keepalive=60):
    """Opens a RawClient, sends a 5.0 CONNECT and checks the CONNACK is a success."""
    raw = RawClient(broker)
    raw.send(connect(client_id, version=5, flags=flags, keepalive=keepalive, properties=properties))
    first, body = raw.read_packet()
    assert first == 0x20 and body[1] == 0x00, f"CONNACK {first:#04x} {bytes(body)!r}"
    return raw
