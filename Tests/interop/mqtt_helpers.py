"""Helpers around paho-mqtt 2.x that wait for events instead of sleeping."""
import queue
import socket
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 10  # seconds to wait for an event that must happen


class Client:
    """A paho client whose callbacks feed queues the test can wait on."""

    def __init__(self, broker, client_id="", protocol=mqtt.MQTTv311, clean=True, scheme="mqtt", tls=None, ws_path="/mqtt",
                 username=None, password=None, **connect_kwargs):
        """`scheme` picks the broker's listener: mqtt, mqtts, ws or wss; `tls` holds the
        arguments of paho's `tls_set` (CA file, client certificate) for mqtts and wss; with
        `username`, the CONNECT carries it (and `password`)."""
        self.broker = broker
        self.protocol = protocol
        self.port = broker.ports[scheme]
        kwargs = {"client_id": client_id, "protocol": protocol, "callback_api_version": mqtt.CallbackAPIVersion.VERSION2,
                  "transport": "websockets" if scheme in ("ws", "wss") else "tcp"}
        if protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(**kwargs)
        if scheme in ("ws", "wss"):
            self.client.ws_set_options(path=ws_path)
        if scheme in ("mqtts", "wss"):
            self.client.tls_set(**(tls or {}))
        if username is not None:
            self.client.username_pw_set(username, password)
        self.clean = clean
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.subacks = queue.Queue()
        self.unsubacks = queue.Queue()
        self.published = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, props: self.connacks.put((flags, rc, props))
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.put((rc, props))
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put((mid, rcs, props))
        self.client.on_unsubscribe = lambda c, u, mid, rcs, props: self.unsubacks.put((mid, rcs, props))
        self.client.on_publish = lambda c, u, mid, rc, props: self.published.put((mid, rc, props))
        self.connect_kwargs = connect_kwargs

    @classmethod
    def connected(cls, broker, **kwargs):
        """A client made with `kwargs`, connected."""
        client = cls(broker, **kwargs)
        client.connect()
        return client

    def connect(self, keepalive=60, properties=None, expect_success=True, **kwargs):
        if self.protocol == mqtt.MQTTv5:
            kwargs.setdefault("clean_start", self.clean)
        self.client.connect(self.broker.host, self.port, keepalive=keepalive, properties=properties, **kwargs)
        self.client.loop_start()
        flags, rc, props = self.connacks.get(timeout=TIMEOUT)
        if expect_success:
            assert not rc.is_failure, f"CONNACK {rc}"
        return flags, rc, props

    def subscribe(self, topic, qos=0, options=None, properties=None):
        if options is not None:
            result, mid = self.client.subscribe(topic, options=options, properties=properties)
        else:
            result, mid = self.client.subscribe(topic, qos, properties=properties)
        got_mid, rcs, props = self.subacks.get(timeout=TIMEOUT)
        assert got_mid == mid
        return rcs

    def publish(self, topic, payload, qos=0, retain=False, properties=None, wait=True):
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if wait:
            info.wait_for_publish(timeout=TIMEOUT)
            assert info.is_published()
        return info

    def publish_answer(self, topic, payload, qos=1):
        """Publishes and returns the broker's reason code (PUBACK, or PUBREC for QoS 2)."""
        self.publish(topic, payload, qos=qos)
        _, rc, _ = self.published.get(timeout=TIMEOUT)
        return rc.value

    def message(self, timeout=TIMEOUT):
        return self.messages.get(timeout=timeout)

    def no_message(self, after=None):
        """Proves no message arrived by a round trip through the broker: a PINGREQ-equivalent
        publish to a private topic is received after anything sent before it."""
        marker = f"marker/{id(self)}"
        self.client.subscribe(marker, 0)
        self.subacks.get(timeout=TIMEOUT)
        self.client.publish(marker, b"m", qos=0)
        msg = self.messages.get(timeout=TIMEOUT)
        assert msg.topic == marker, f"unexpected message on {msg.topic}: {msg.payload!r}"

    def disconnect(self, reasoncode=None, properties=None):
        self.client.disconnect(reasoncode=reasoncode, properties=properties)
        self.disconnects.get(timeout=TIMEOUT)
        self.client.loop_stop()

    def kill(self):
        """Drops the TCP connection without DISCONNECT (the will fires)."""
        self.client.loop_stop()
        self.client.socket().shutdown(socket.SHUT_RDWR)
        self.client.socket().close()


def v5_properties(packet_type, **values):
    props = Properties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return props
