"""The .deb (scripts/package-deb; README "Install from the .deb"): built from the binary under
test, inspected with dpkg-deb, extracted with `dpkg -x` into a temporary root, and the extracted
broker run on the packaged configuration (its addresses and data directory moved to the test's):
a mosquitto_pub reading lands in its SQLite store. lintian runs where it is installed."""
import os
import pathlib
import re
import shutil
import sqlite3
import subprocess
import tempfile
import tomllib

import pytest

from conftest import BINARY, ROOT, Broker

SCRIPT = ROOT / "scripts" / "package-deb"


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    out = tmp_path_factory.mktemp("deb")
    env = dict(os.environ, STARLING_BIN=str(BINARY), DEB_COMPRESSION="gzip")
    built = subprocess.run([str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert built.returncode == 0, built.stderr
    path = built.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r".*/starling_\d+\.\d+\.\d+-\d+_[a-z0-9]+\.deb", path), path
    return path


def dpkg_deb(*args):
    result = subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_package_holds_the_broker_its_units_and_a_conffile(deb):
    control = dpkg_deb("--field", deb)
    fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", control, re.M))
    assert fields["Package"] == "starling" and fields["Section"] == "net"
    for needed in ("libc6", "libsqlite3-0", "adduser"):  # GRDB loads the system SQLite
        assert needed in fields["Depends"], fields["Depends"]
    contents = dpkg_deb("--contents", deb)
    for path in ("./usr/bin/starling", "./lib/systemd/system/starling.service", "./lib/systemd/system/starling@.service",
                 "./etc/starling/starling.toml", "./usr/share/doc/starling/copyright", "./usr/share/doc/starling/changelog.Debian.gz"):
        assert path in contents, path
    info = dpkg_deb("--info", deb)
    for script in ("postinst", "prerm", "postrm", "conffiles"):
        assert script in info, script


def test_the_maintainer_scripts_create_and_remove_the_user_and_its_directory(deb, tmp_path):
    subprocess.run(["dpkg-deb", "--control", deb, str(tmp_path / "control")], check=True, timeout=60)
    control = tmp_path / "control"
    assert (control / "conffiles").read_text().split() == ["/etc/starling/starling.toml"]
    for script in ("postinst", "prerm", "postrm"):
        assert subprocess.run(["sh", "-n", str(control / script)], timeout=30).returncode == 0, script
    postinst = (control / "postinst").read_text()
    assert "adduser --system --group" in postinst and "install -d -o starling -g starling" in postinst
    assert "deb-systemd-helper enable starling.service" in postinst
    postrm = (control / "postrm").read_text()
    assert re.search(r'"\$1" = "purge".*rm -rf /var/lib/starling.*deluser', postrm, re.S)


def test_the_packaged_unit_runs_as_the_package_user_without_missing_credentials(deb, tmp_path):
    subprocess.run(["dpkg", "-x", deb, str(tmp_path)], check=True, timeout=120)
    unit = (tmp_path / "lib/systemd/system/starling.service").read_text()
    assert "ExecStart=/usr/bin/starling serve --config /etc/starling/starling.toml" in unit
    assert re.search(r"^User=starling$", unit, re.M) and not re.search(r"^DynamicUser=", unit, re.M)
    # The packaged configuration has no TLS listener: an active LoadCredential= of files that
    # do not exist would keep the service from starting.
    assert not re.search(r"^LoadCredential=", unit, re.M)


def test_the_extracted_broker_serves_on_the_packaged_configuration(deb, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["dpkg", "-x", deb, str(root)], check=True, timeout=120)
    config = (root / "etc/starling/starling.toml").read_text()
    settings = tomllib.loads(config)
    assert settings["mqtt"]["listeners"] == ["127.0.0.1:1883"] and settings["http"]["listen"] == "127.0.0.1:8080"
    assert settings["storage"]["data_dir"] == "/var/lib/starling" and settings["ingest"]["enabled"] is True
    assert "auth" not in settings, "secure settings ship commented"
    data = tmp_path / "var-lib-starling"
    config = config.replace('"/var/lib/starling"', f'"{data}"').replace('"127.0.0.1:1883"', '"127.0.0.1:0"') \
        .replace('"127.0.0.1:8080"', '"127.0.0.1:0"')
    (tmp_path / "starling.toml").write_text(config)
    broker = Broker(extra_args=("--config", str(tmp_path / "starling.toml")), http=True, mqtt_listen=None,
                    binary=str(root / "usr/bin/starling"))
    try:
        assert broker.get("/readyz")[0] == 200
        sent = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-i", "deb-device", "-q", "1",
                               "-t", "readings/deb", "-m", "21.5"], capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
    finally:
        broker.stop()
    with sqlite3.connect(data / "starling.db") as db:
        rows = db.execute("SELECT client_id, topic, payload FROM messages").fetchall()
    assert rows == [("deb-device", "readings/deb", b"21.5")], rows


def test_lintian_finds_nothing_unexplained(deb):
    lintian = shutil.which("lintian")
    if lintian is None:
        pytest.skip("lintian is not installed here")
    # The binary under test is the debug build, linked to the toolchain's Swift runtime (a
    # RUNPATH into it); the release build scripts/package-deb makes links it statically. The
    # package's own overrides are in deploy/debian/lintian-overrides.
    result = subprocess.run([lintian, "--fail-on", "error,warning", "--suppress-tags", "custom-library-search-path", deb],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def open_dir():
    """A temporary directory others may enter (pytest's own are the test user's alone)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="starling-deb-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_packaged_broker_serves_as_an_unprivileged_user(deb, open_dir):
    """The package's service runs as the `starling` system user (the image as uid 10001, the
    deploy/ units as a dynamic user): no step of serving a client may need privileges. Setting
    TCP_NODELAY at the socket level instead of TCP's asked for SO_DEBUG, which only root may set:
    every connection was closed at accept (found through this package)."""
    if os.geteuid() != 0:
        pytest.skip("switching to an unprivileged user needs root (an unprivileged run of the suite tests this everywhere)")
    root = open_dir / "root"
    subprocess.run(["dpkg", "-x", deb, str(root)], check=True, timeout=120)
    data = open_dir / "data"
    data.mkdir()
    for path in (open_dir, root, data, *root.rglob("*")):
        if path.is_dir():
            path.chmod(0o755)
    nobody = 65534
    os.chown(data, nobody, nobody)
    config = (root / "etc/starling/starling.toml").read_text().replace('"/var/lib/starling"', f'"{data}"') \
        .replace('"127.0.0.1:1883"', '"127.0.0.1:0"').replace('"127.0.0.1:8080"', '""')
    (open_dir / "starling.toml").write_text(config)
    (open_dir / "starling.toml").chmod(0o644)

    def drop():
        os.setgroups([])
        os.setgid(nobody)
        os.setuid(nobody)

    process = subprocess.Popen([str(root / "usr/bin/starling"), "serve", "--config", str(open_dir / "starling.toml")],
                               stdout=subprocess.PIPE, stderr=open(open_dir / "broker.log", "w"), text=True, cwd=data, preexec_fn=drop,
                               env=dict(os.environ, STARLING_SERVER_DRAIN_WAIT="0"))
    try:
        port = None
        for line in process.stdout:  # the broker announces its port; output ends if it exits
            match = re.match(r"starling: listening mqtt 127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "the broker did not listen: " + (open_dir / "broker.log").read_text()[-2000:]
        sent = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-i", "unprivileged", "-q", "1",
                               "-t", "readings/nobody", "-m", "7"], capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
    finally:
        process.terminate()
        process.wait(60)
    with sqlite3.connect(data / "starling.db") as db:
        assert db.execute("SELECT client_id, payload FROM messages").fetchall() == [("unprivileged", b"7")]
