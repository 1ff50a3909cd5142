"""The `starling` command line: generate-config, configuration errors (exit status 2 with a message
naming the key, the value and what is allowed), and the precedence file < STARLING_* < flags."""
import os
import pathlib
import re
import subprocess
import tomllib

import paho.mqtt.client as mqtt
import pytest

from conftest import BINARY
from mqtt_helpers import Client

RUN_TIMEOUT = 60  # a process that should exit at once; only bounds a broken run

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
# Defaults that the README states in words rather than as a TOML value.
README_WORDS = {"host name": ""}


def readme_defaults():
    """{(section, key): default} from the README's configuration reference table (rows of the form
    | `section.key` | `default` | meaning |, in the "Configuration reference" section)."""
    found = {}
    text = README.read_text()
    section = text[text.index("## Configuration reference"):]
    section = section[:section.index("\n## ", 1)]
    for line in section.splitlines():
        match = re.match(r"\| `(\w+)\.(\w+)` \| (`(.*?)`|([^|]+?)) \|", line)
        if not match:
            continue
        section, key, literal, words = match.group(1), match.group(2), match.group(4), match.group(5)
        value = README_WORDS[words.strip()] if literal is None else tomllib.loads(f"v = {literal}")["v"]
        found[(section, key)] = value
    return found


def run(*args, env=None, timeout=RUN_TIMEOUT):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STARLING_") or k == "STARLING_BIN"}
    full_env.update(env or {})
    return subprocess.run([BINARY, *args], capture_output=True, text=True, env=full_env, timeout=timeout)


def serve_with(tmp_path, config_text=None, env=None, flags=("--mqtt", "127.0.0.1:0")):
    """Runs `starling serve` expecting it to refuse to start."""
    args = ["serve", *flags]
    if config_text is not None:
        path = tmp_path / "starling.toml"
        path.write_text(config_text)
        args += ["--config", str(path)]
    return run(*args, env=env)


def assert_config_error(result, *parts):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    for part in parts:
        assert part in result.stderr, f"{part!r} not in {result.stderr!r}"


# ---- generate-config ---------------------------------------------------------------------------

def test_generate_config_lists_every_key_with_its_default():
    """`generate-config` prints a TOML document holding every key at its default, each documented
    with its STARLING_* variable, and the README's configuration table lists exactly those keys
    with exactly those defaults (the defaults are written once, in the Swift types that use them;
    this keeps the README true to them)."""
    result = run("generate-config")
    assert result.returncode == 0, result.stderr
    document = tomllib.loads(result.stdout)
    in_document = {(section, key): value for section, keys in document.items() for key, value in keys.items()}
    assert in_document == readme_defaults()
    for section, key in in_document:
        assert f"# (STARLING_{section.upper()}_{key.upper()})\n{key} = " in result.stdout
    # The authorization rules are documented too (as a commented example).
    assert "# [[authorization.rules]]" in result.stdout


def test_generate_config_document_is_accepted(broker_factory):
    """The very document `generate-config` prints is a valid --config (the fixture's --mqtt flag
    replaces its listener, so no fixed port is used)."""
    document = run("generate-config").stdout
    broker = broker_factory(config_text=document)
    c = Client.connected(broker, protocol=mqtt.MQTTv5)
    c.subscribe("cli/echo", 1)
    c.publish("cli/echo", b"ok", qos=1)
    assert c.message().payload == b"ok"
    c.disconnect()
    assert broker.terminate() == 0


# ---- configuration errors: exit status 2, key, value and what is allowed -----------------------

def test_bad_flag_value(tmp_path):
    """`--mqtt nonsense`: exit 2 naming mqtt.listeners, the value and the HOST:PORT form."""
    result = serve_with(tmp_path, flags=("--mqtt", "nonsense"))
    assert_config_error(result, "mqtt.listeners", "nonsense", "--mqtt", "HOST:PORT")


def test_bad_http_flag_value(tmp_path):
    """`--http 8080` (no host): exit 2 naming http.listen, the value and the HOST:PORT form."""
    result = serve_with(tmp_path, flags=("--mqtt", "127.0.0.1:0", "--http", "8080"))
    assert_config_error(result, "http.listen", "8080", "--http", "HOST:PORT")


def test_http_port_in_use_is_a_clear_error(tmp_path):
    """An operations port that is taken: the broker exits non-zero naming http.listen."""
    import socket
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        result = serve_with(tmp_path, flags=("--mqtt", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"), "--http", f"127.0.0.1:{port}"))
        assert result.returncode != 0
        assert "http.listen" in result.stderr and f"127.0.0.1:{port}" in result.stderr
    finally:
        taken.close()


@pytest.mark.parametrize("config, expected", [
    # A value out of range: the key, -1, the allowed range and the file.
    ("[mqtt]\nmax_keepalive = -1\n", ("mqtt.max_keepalive", "-1", "a whole number from 0 to 65535", "starling.toml")),
    # A string where a boolean belongs: the key, the value and true/false.
    ('[mqtt]\nretain_available = "yes"\n', ("mqtt.retain_available", '"yes"', "true or false")),
    # An unknown strategy: the strategies.
    ('[mqtt]\nshared_subscription_strategy = "fastest"\n',
     ("mqtt.shared_subscription_strategy", '"fastest"', '"round_robin"', '"hash_topic"')),
    # An unknown key: it, its value, and the known keys of its section.
    ("[mqtt]\nmax_keepalives = 10\n", ("mqtt.max_keepalives", "10", "a known key of [mqtt]", "max_keepalive")),
    # An unknown section: it and the known sections.
    ("[mqttt]\nmax_keepalive = 10\n", ("mqttt", "[mqtt]", "[server]")),
], ids=["value", "type", "choice", "unknown-key", "unknown-section"])
def test_bad_config_file(tmp_path, config, expected):
    """A bad configuration file: exit 2 with an error naming the key, the value and what is allowed."""
    assert_config_error(serve_with(tmp_path, config), *expected)


def test_bad_env_value(tmp_path):
    """`STARLING_MQTT_MAX_KEEPALIVE=abc`: exit 2 naming the key, the variable, abc and the range."""
    result = serve_with(tmp_path, env={"STARLING_MQTT_MAX_KEEPALIVE": "abc"})
    assert_config_error(result, "mqtt.max_keepalive", "abc", "STARLING_MQTT_MAX_KEEPALIVE", "a whole number from 0 to 65535")


def test_bad_env_value_out_of_range(tmp_path):
    """`STARLING_MQTT_MAX_KEEPALIVE=70000`: a number, but out of range: exit 2."""
    result = serve_with(tmp_path, env={"STARLING_MQTT_MAX_KEEPALIVE": "70000"})
    assert_config_error(result, "mqtt.max_keepalive", "70000", "a whole number from 0 to 65535")


def test_unknown_env_variable(tmp_path):
    """A STARLING_* variable that names no key is refused rather than silently ignored."""
    result = serve_with(tmp_path, env={"STARLING_MQTT_MAX_KEEPALIV": "10"})
    assert_config_error(result, "STARLING_MQTT_MAX_KEEPALIV", "10", "STARLING_<SECTION>_<KEY>")


def test_bad_toml_syntax(tmp_path):
    """A file that is not TOML: exit 2."""
    result = serve_with(tmp_path, "[mqtt\nmax_keepalive = \n")
    assert_config_error(result, "starling.toml", "a valid TOML document")


# ---- precedence: file < STARLING_* < flags -------------------------------------------------------

def server_keep_alive(broker):
    """The Server Keep Alive a 5.0 client asking for 600 s is told (the effective max_keepalive)."""
    c = Client(broker, protocol=mqtt.MQTTv5)
    _, _, props = c.connect(keepalive=600)
    c.disconnect()
    return getattr(props, "ServerKeepAlive", None)


def test_file_sets_value(broker_factory):
    """The file's value is in force when no variable overrides it."""
    broker = broker_factory(config_text="[mqtt]\nmax_keepalive = 10\n")
    assert server_keep_alive(broker) == 10


def test_env_overrides_file(broker_factory):
    """STARLING_MQTT_MAX_KEEPALIVE overrides the file's max_keepalive."""
    broker = broker_factory(config_text="[mqtt]\nmax_keepalive = 10\n", env={"STARLING_MQTT_MAX_KEEPALIVE": "20"})
    assert server_keep_alive(broker) == 20


def test_env_overrides_file_log_level(broker_factory):
    """STARLING_SERVER_LOG_LEVEL=notice overrides the file's "critical": the notice that precedes
    the listening line on stdout is in the log."""
    broker = broker_factory(config_text='[server]\nlog_level = "critical"\n', env={"STARLING_SERVER_LOG_LEVEL": "notice"})
    assert "listening for MQTT on" in broker.log()


def test_flag_overrides_env_log_level(broker_factory):
    """--log-level critical overrides STARLING_SERVER_LOG_LEVEL=notice: the notice logged before the
    listening line on stdout is absent."""
    broker = broker_factory(env={"STARLING_SERVER_LOG_LEVEL": "notice"}, extra_args=("--log-level", "critical"))
    assert "listening for MQTT on" not in broker.log()


def test_flag_overrides_env_listeners(broker_factory):
    """--mqtt overrides STARLING_MQTT_LISTENERS (here an address this host cannot bind): the broker
    listens where the flag says."""
    broker = broker_factory(env={"STARLING_MQTT_LISTENERS": "192.0.2.1:0"})
    assert broker.host == "127.0.0.1"
    c = Client.connected(broker, protocol=mqtt.MQTTv311)
    c.disconnect()

