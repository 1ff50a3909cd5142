"""The admin API (`http.admin_token`, `/api/v1`) and `starling ctl clients`: list and show
sessions, disconnect a client (5.0: DISCONNECT 0x98) and end its session; no token, no access."""
import json
import os
import subprocess
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt

from conftest import BINARY
from mqtt_helpers import TIMEOUT, Client

TOKEN = "test-admin-token-0123456789"


def api(broker, method, path, token=TOKEN):
    request = urllib.request.Request(f"http://127.0.0.1:{broker.http_port}{path}", method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read().decode()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read().decode() or "null")


def ctl(broker, *args):
    env = dict(os.environ, STARLING_HTTP_ADMIN_TOKEN=TOKEN)
    return subprocess.run([BINARY, "ctl", "clients", *args, "--url", f"http://127.0.0.1:{broker.http_port}"],
                          capture_output=True, text=True, timeout=60, env=env)


def test_admin_api_lists_shows_and_disconnects(broker_factory, store):
    broker = broker_factory(config_text=f'[http]\nadmin_token = "{TOKEN}"\n', extra_args=store.args, http=True)
    a = Client.connected(broker, client_id="admin/a b", protocol=mqtt.MQTTv5)
    a.subscribe("x/#", qos=1)
    b = Client.connected(broker, client_id="admin-b", protocol=mqtt.MQTTv311, clean=False)

    status, body = api(broker, "GET", "/api/v1/clients")
    assert status == 200
    clients = {c["client_id"]: c for c in body["clients"]}
    assert set(clients) == {"admin/a b", "admin-b"}
    assert clients["admin/a b"]["protocol_version"] == "5.0" and clients["admin/a b"]["subscriptions"] == ["x/#"]
    assert clients["admin-b"]["persistent"] and clients["admin-b"]["connected"]
    assert str(b.client.socket().getsockname()[1]) in clients["admin-b"]["remote_address"]

    listed = ctl(broker, "list")
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith("admin/a b\tconnected\t5.0") for line in listed.stdout.splitlines())
    shown = ctl(broker, "show", "admin/a b")
    assert json.loads(shown.stdout)["client_id"] == "admin/a b"

    # Disconnect: the 5.0 client is told 0x98; its session (clean start, expiry 0) ends with it.
    assert ctl(broker, "disconnect", "admin/a b").returncode == 0
    reason, _ = a.disconnects.get(timeout=TIMEOUT)
    assert reason.value == 0x98
    # The 3.1.1 persistent session stays, offline, until it is ended too.
    assert api(broker, "DELETE", "/api/v1/clients/admin-b")[0] == 204
    b.disconnects.get(timeout=TIMEOUT)
    status, body = api(broker, "GET", "/api/v1/clients/admin-b")
    assert status == 200 and not body["connected"] and body["persistent"]
    assert api(broker, "DELETE", "/api/v1/clients/admin-b?end_session=true")[0] == 204
    assert api(broker, "GET", "/api/v1/clients/admin-b")[0] == 404
    assert api(broker, "DELETE", "/api/v1/clients/nobody")[0] == 404
    missing = ctl(broker, "disconnect", "nobody")
    assert missing.returncode != 0 and "no client nobody" in missing.stderr
    a.client.loop_stop()
    b.client.loop_stop()


def test_admin_api_needs_the_token(broker_factory):
    broker = broker_factory(config_text=f'[http]\nadmin_token = "{TOKEN}"\n', http=True)
    assert api(broker, "GET", "/api/v1/clients", token=None)[0] == 401
    assert api(broker, "GET", "/api/v1/clients", token=TOKEN + "x")[0] == 401
    assert api(broker, "GET", "/api/v1/clients", token=TOKEN[:-1])[0] == 401
    assert api(broker, "GET", "/api/v1/clients")[0] == 200
    assert broker.get("/readyz")[0] == 200  # health and metrics need no token


def test_no_token_no_admin_api(broker_factory):
    broker = broker_factory(http=True)
    assert api(broker, "GET", "/api/v1/clients")[0] == 404
