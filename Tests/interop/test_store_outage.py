"""A store lost at run time (PostgreSQL behind a TCP proxy that the test cuts): no crash, QoS 0
keeps flowing, QoS 1 is not acknowledged until writes succeed again, the failure is logged once;
and a store unreachable at start is a clear error with exit status 1."""
import os
import select
import socket
import subprocess
import threading
import urllib.parse

import pytest

from conftest import BINARY
from mqtt_helpers import TIMEOUT, Client
from raw_client import RawClient, connect, packet, string
from stores import POSTGRES_URL


class Proxy:
    """Forwards TCP to a target; `cut()` drops every connection and refuses new ones."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.sockets = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if not self.open:
                    client.close()
                    continue
                upstream = socket.create_connection(self.target)
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            self.open = False
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.sockets = []

    def restore(self):
        with self.lock:
            self.open = True

    def close(self):
        self.cut()
        self.listener.close()


def postgres_behind_proxy(schema_prefix):
    """The test PostgreSQL behind a `Proxy` the test can cut: (proxy, the broker's --postgres
    flags with a schema of its own). Skips without PostgreSQL, fails under CI."""
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("CI is set but STARLING_TEST_POSTGRES_URL is not")
        pytest.skip("no PostgreSQL configured (run under scripts/with-postgres)")
    url = urllib.parse.urlsplit(POSTGRES_URL)
    proxy = Proxy(url.hostname, url.port)
    proxied = POSTGRES_URL.replace(f"{url.hostname}:{url.port}", f"127.0.0.1:{proxy.port}")
    return proxy, ["--postgres", f"{proxied}?schema={schema_prefix}_{proxy.port}"]


def test_store_lost_at_run_time_holds_qos1_acks_and_keeps_qos0_flowing(broker_factory):
    proxy, flags = postgres_behind_proxy("outage")
    try:
        broker = broker_factory(extra_args=flags)
        sub = Client(broker, client_id="outage-sub")
        sub.connect()
        sub.subscribe("outage/#", qos=0)

        pub = RawClient(broker)
        pub.send(connect("outage-pub", version=4))
        assert pub.read_packet() == (0x20, b"\x00\x00")

        proxy.cut()
        pub.send(packet(0x32, string("outage/q1"), b"\x00\x01", b"held"))
        pub.send(packet(0x30, string("outage/q0"), b"flows"))
        # QoS 0 keeps flowing (the QoS 1 message may reach the online subscriber first).
        payloads = set()
        while b"flows" not in payloads:
            payloads.add(sub.message().payload)
        # Everything before the QoS 0 message has been handled: no PUBACK is waiting on the socket.
        assert select.select([pub.sock], [], [], 0)[0] == []

        # The broker reports the lost store (it refused, or has not answered for 5 s).
        broker.wait_for_log(("refused a commit", "has not answered"))
        assert select.select([pub.sock], [], [], 0)[0] == []
        proxy.restore()
        assert pub.read_packet() == (0x40, b"\x00\x01")  # acknowledged once writes succeed
        broker.wait_for_log(("writable again",))
        log = broker.log()
        # Logged once when the store was lost (it refused, or did not answer), once when back.
        assert log.count("refused a commit") + log.count("has not answered") == 1
        assert log.count("writable again") == 1
    finally:
        proxy.close()


def test_store_unreachable_at_start_exits_1_naming_the_store(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    result = subprocess.run([BINARY, "serve", "--mqtt", "127.0.0.1:0", "--postgres", f"postgres://u:secret@127.0.0.1:{port}/db"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr
    assert "secret" not in result.stderr
