"""Fixtures for the end-to-end tests: each test gets its own `starling` process on a port the
kernel picks (listen on port 0; the broker prints the bound address), stopped at teardown.

The binary is STARLING_BIN, else .build/debug/starling (built by scripts/test).
"""
import os
import pathlib
import signal
import subprocess
import tempfile
import threading

import pytest

from stores import Store, store_params

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = os.environ.get("STARLING_BIN", str(ROOT / ".build" / "debug" / "starling"))
START_TIMEOUT = 60  # seconds to wait for the "listening" line before giving up


class Broker:
    """A running `starling serve` process."""

    def __init__(self, config_text=None, extra_args=(), env=None, http=False, schemes=("mqtt",), mqtt_listen="127.0.0.1:0",
                 workdir=None, binary=None):
        """`binary`: another starling executable than the one under test (an extracted package's).
        `mqtt_listen` is the `--mqtt` address (e.g. "0.0.0.0:0"); None passes no `--mqtt`, so
        mqtt.listeners of the configuration decides. Clients reach the broker at 127.0.0.1.
        `workdir`: the working directory (its ./data outlives the process: a node restarted
        there finds its spool); by default a temporary one."""
        self.tmp = tempfile.TemporaryDirectory(prefix="starling-test-")
        args = [binary or BINARY, "serve"] + (["--mqtt", mqtt_listen] if mqtt_listen is not None else [])
        if http:
            args += ["--http", "127.0.0.1:0"]  # the operations endpoints, on a port the kernel picks
        if config_text is not None:
            path = pathlib.Path(self.tmp.name) / "starling.toml"
            path.write_text(config_text)
            args += ["--config", str(path)]
        args += list(extra_args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        # Work scheduled on an event loop that has shut down is a crash, not a printed line
        # (SwiftNIO's strict mode): a stop that leaves such work behind fails its test.
        full_env.setdefault("SWIFTNIO_STRICT", "1")
        # Tests stop brokers often: no drain wait unless a test asks for one.
        if "STARLING_SERVER_DRAIN_WAIT" not in full_env and "drain_wait" not in (config_text or ""):
            full_env["STARLING_SERVER_DRAIN_WAIT"] = "0"
        self.stderr_path = pathlib.Path(self.tmp.name) / "stderr.log"
        self.stderr = open(self.stderr_path, "w")
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                        env=full_env, cwd=workdir or self.tmp.name)
        self.host = "127.0.0.1"
        self.ports = self._wait_for_listeners(set(schemes) | ({"http"} if http else set()))
        self.port = self.ports.get("mqtt")
        self.http_port = self.ports.get("http")
        self.lines = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_listeners(self, wanted):
        """Reads standard output up to the "starling: listening SCHEME HOST:PORT" line of each
        scheme in `wanted` (mqtt, mqtts, ws, wss, http); returns {scheme: port}."""
        ready = threading.Event()
        found = {}

        def read():
            for line in self.process.stdout:
                if line.startswith("starling: listening "):
                    scheme, address = line.split()[2:4]
                    found[scheme] = int(address.rsplit(":", 1)[1])
                if wanted <= set(found):
                    break
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(START_TIMEOUT) or not wanted <= set(found):
            self.stderr.flush()
            log = self.stderr_path.read_text()
            self.stop()
            raise RuntimeError("starling did not start:\n" + log)
        return dict(found)

    def get(self, path):
        """GET on the operations endpoints: (status, body text)."""
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def _drain(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def log(self):
        self.stderr.flush()
        return self.stderr_path.read_text()

    def wait_for_log(self, needles, timeout=60):
        """Waits until the broker's log holds one of `needles` (follows the file as it grows)."""
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if any(n in text for n in needles):
                return text
            time.sleep(0.05)  # polling a file that has no change notification; not a timing assumption
        raise AssertionError(f"none of {needles} in the broker log within {timeout}s:\n{self.log()[-2000:]}")

    def terminate(self, timeout=30):
        """SIGTERM and wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stderr.close()
        self.tmp.cleanup()


@pytest.fixture
def broker_factory():
    """Starts brokers with a given configuration; stops them all at the end of the test."""
    started = []

    def start(config_text=None, extra_args=(), env=None, http=False, schemes=("mqtt",), mqtt_listen="127.0.0.1:0"):
        b = Broker(config_text, extra_args, env, http, schemes, mqtt_listen)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def broker(broker_factory):
    """A broker with the default configuration."""
    return broker_factory()


@pytest.fixture(params=store_params())
def store(request):
    """Each store in turn (stores.py): its flags and SQL access, with a data directory of its own."""
    data = tempfile.TemporaryDirectory(prefix="starling-store-")
    yield Store(request.param, data.name)
    data.cleanup()
