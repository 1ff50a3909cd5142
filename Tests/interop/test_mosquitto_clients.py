"""Interoperability with Eclipse Mosquitto's command-line clients (Debian's mosquitto-clients):
mosquitto_sub receives what mosquitto_pub sends, in 3.1.1 and 5.0, at every QoS; retained
messages; wills.

A subscriber is proven ready before anything is published: it runs with `-d`, whose debug lines
include "received SUBACK", and the test waits for that line. Its standard output is made line
buffered with stdbuf, as it is a pipe here.

mosquitto_sub is never stopped with SIGINT/SIGTERM: its signal handler calls
mosquitto_disconnect_v5(), which takes a mutex the interrupted thread may hold, and the process
then hangs (seen with 2.0.11). Subscribers end by -C / --retained-only, or are killed (SIGKILL)
to drop their connection. For the record, on SIGINT a 5.0 mosquitto_sub sends DISCONNECT 0x04
(Disconnect with Will Message), so its will IS published; a 3.1.1 one sends a plain DISCONNECT.
"""
import queue
import signal
import subprocess
import threading

import pytest

TIMEOUT = 20  # bounds a wait for something that must happen

VERSIONS = ["mqttv311", "mqttv5"]


class Sub:
    """A running mosquitto_sub, started and awaited until subscribed."""

    def __init__(self, broker, *args, version="mqttv311"):
        cmd = ["stdbuf", "-oL", "mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", version, "-d", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.output = []
        threading.Thread(target=self._read, daemon=True).start()
        self._wait_for("received SUBACK")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _wait_for(self, text):
        while True:
            try:
                line = self.lines.get(timeout=TIMEOUT)
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"mosquitto_sub never printed {text!r}; got {self.output}")
            if line is None:
                raise AssertionError(f"mosquitto_sub exited ({self.proc.wait()}) before {text!r}: "
                                     f"{self.output} {self.proc.stderr.read()}")
            self.output.append(line)
            if text in line:
                return

    def messages(self):
        """Waits for the process to exit (it has -C or --retained-only) and returns the lines it
        printed for messages (debug lines start with "Client ")."""
        try:
            status = self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"mosquitto_sub did not finish: {self.output}")
        while (line := self.lines.get(timeout=TIMEOUT)) is not None:
            self.output.append(line)
        assert status == 0, (status, self.output, self.proc.stderr.read())
        return [line for line in self.output if not line.startswith("Client ") and not line.startswith("Subscribed")]

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        self.proc.wait(TIMEOUT)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def subs():
    started = []
    yield started
    for s in started:
        s.close()


def pub(broker, *args, version="mqttv311"):
    result = subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", version, *args],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return result


def sub_once(broker, *args, version="mqttv311"):
    """mosquitto_sub for messages that are already there (retained): no readiness needed."""
    result = subprocess.run(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", version, *args],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


# ---- publish / subscribe -----------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_sub_each_qos(broker, subs, version, qos):
    """mosquitto_pub → mosquitto_sub at QoS 0, 1 and 2, in order, topic and payload intact."""
    s = Sub(broker, "-t", "mq/#", "-q", str(qos), "-v", "-C", "3", version=version)
    subs.append(s)
    for i in range(3):
        pub(broker, "-t", f"mq/{i}", "-m", f"payload {i}", "-q", str(qos), version=version)
    assert s.messages() == ["mq/0 payload 0", "mq/1 payload 1", "mq/2 payload 2"]


def test_mqtt_3_8_4_8_qos_downgraded_to_subscription(broker, subs):
    """[MQTT-3.8.4-8] A QoS 2 message to a QoS 0 subscription arrives at QoS 0 (the debug line
    shows q0)."""
    s = Sub(broker, "-t", "down/t", "-q", "0", "-C", "1", version="mqttv5")
    subs.append(s)
    pub(broker, "-t", "down/t", "-m", "x", "-q", "2", version="mqttv5")
    assert s.messages() == ["x"]
    assert any("received PUBLISH (d0, q0" in line for line in s.output), s.output


def test_mixed_versions(broker, subs):
    """A 3.1.1 publisher reaches a 5.0 subscriber and the reverse."""
    s5 = Sub(broker, "-t", "mix/#", "-q", "1", "-v", "-C", "2", version="mqttv5")
    s3 = Sub(broker, "-t", "mix/#", "-q", "1", "-v", "-C", "2", version="mqttv311")
    subs += [s5, s3]
    pub(broker, "-t", "mix/a", "-m", "from 3.1.1", "-q", "1", version="mqttv311")
    pub(broker, "-t", "mix/b", "-m", "from 5.0", "-q", "1", version="mqttv5")
    assert s5.messages() == ["mix/a from 3.1.1", "mix/b from 5.0"]
    assert s3.messages() == ["mix/a from 3.1.1", "mix/b from 5.0"]


def test_mqtt_3_3_2_17_user_property_and_content_type(broker, subs):
    """[MQTT-3.3.2-17][MQTT-3.3.2-20] mosquitto_pub -D publish properties reach mosquitto_sub
    unaltered (printed with -F: %P user properties, %C content type)."""
    s = Sub(broker, "-t", "props/t", "-C", "1", "-F", "%t|%C|%P|%p", version="mqttv5")
    subs.append(s)
    pub(broker, "-t", "props/t", "-m", "body", "-D", "publish", "user-property", "k", "v",
        "-D", "publish", "content-type", "text/plain", version="mqttv5")
    assert s.messages() == ["props/t|text/plain|k:v|body"]


# ---- retained ----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_mqtt_3_3_1_5_retained_delivered_to_new_subscriber(broker, version):
    """[MQTT-3.3.1-5][MQTT-3.3.1-9] A retained message (-r) reaches a later subscriber, flagged
    retained."""
    pub(broker, "-t", "ret/a", "-m", "kept", "-r", "-q", "1", version=version)
    assert sub_once(broker, "-t", "ret/a", "-v", "-C", "1", "-F", "%t %p %r", version=version) == ["ret/a kept 1"]


@pytest.mark.parametrize("version", VERSIONS)
def test_mqtt_3_3_1_6_retained_cleared_with_empty_payload(broker, subs, version):
    """[MQTT-3.3.1-6][MQTT-3.3.1-7] (3.1.1: [MQTT-3.3.1-10][MQTT-3.3.1-11]) `-n -r` clears the retained message: a new subscriber to the
    wildcard gets only the other retained message. mosquitto_sub --retained-only prints retained
    messages and exits at the first live one, so its output is exactly the retained set."""
    pub(broker, "-t", "clr/a", "-m", "old", "-r", version=version)
    pub(broker, "-t", "clr/b", "-m", "stays", "-r", version=version)
    pub(broker, "-t", "clr/a", "-n", "-r", version=version)
    s = Sub(broker, "-t", "clr/#", "-v", "--retained-only", version=version)
    subs.append(s)
    pub(broker, "-t", "clr/live", "-m", "end", version=version)
    assert s.messages() == ["clr/b stays"]


def test_mqtt_3_3_1_5_retained_replaced(broker):
    """[MQTT-3.3.1-5] A second retained PUBLISH replaces the first."""
    pub(broker, "-t", "rep/a", "-m", "first", "-r")
    pub(broker, "-t", "rep/a", "-m", "second", "-r")
    assert sub_once(broker, "-t", "rep/a", "-C", "1") == ["second"]


# ---- wills -------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_mqtt_3_1_2_8_will_published_when_connection_drops(broker, subs, version):
    """[MQTT-3.1.2-8] mosquitto_sub --will-*: killed (its connection closes without DISCONNECT),
    its will reaches a subscriber of the will topic."""
    watcher = Sub(broker, "-t", "will/t", "-q", "1", "-v", "-C", "1", version=version)
    subs.append(watcher)
    dying = Sub(broker, "-t", "unrelated", "--will-topic", "will/t", "--will-payload", "gone", "--will-qos", "1",
                "-i", "dying-client", version=version)
    subs.append(dying)
    dying.kill(signal.SIGKILL)
    assert watcher.messages() == ["will/t gone"]


@pytest.mark.parametrize("version", VERSIONS)
def test_mqtt_3_1_2_15_will_retained(broker, subs, version):
    """[MQTT-3.1.2-15] (3.1.1: [MQTT-3.1.2-17]) --will-retain: the will is published retained, so a later subscriber gets it."""
    watcher = Sub(broker, "-t", "willr/t", "-C", "1", version=version)
    subs.append(watcher)
    dying = Sub(broker, "-t", "unrelated", "--will-topic", "willr/t", "--will-payload", "last words",
                "--will-retain", version=version)
    subs.append(dying)
    dying.kill(signal.SIGKILL)
    assert watcher.messages() == ["last words"]
    assert sub_once(broker, "-t", "willr/t", "-C", "1", "-F", "%p %r", version=version) == ["last words 1"]


@pytest.mark.parametrize("version", VERSIONS)
def test_mqtt_3_14_4_3_will_discarded_on_normal_disconnect(broker, subs, version):
    """[MQTT-3.14.4-3] mosquitto_pub with a will publishes and disconnects normally (5.0: reason
    0x00): its will is discarded; the marker published after it is the first thing the watcher gets."""
    watcher = Sub(broker, "-t", "willp/t", "-v", "-C", "1", version=version)
    subs.append(watcher)
    pub(broker, "-t", "willp/other", "-m", "x", "--will-topic", "willp/t", "--will-payload", "gone", version=version)
    pub(broker, "-t", "willp/t", "-m", "marker", version=version)
    assert watcher.messages() == ["willp/t marker"]
