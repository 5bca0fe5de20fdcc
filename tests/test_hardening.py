"""Hardening (issue 11): every numbered finding of the hostile test run, as a regression test
through the real server (`cooccur serve` as a process) or the CLI."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from query_testdata import make_backend

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def strict_loads(text: bytes):
    """A strict JSON parser: NaN and Infinity are not JSON."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


class Server:
    """`cooccur serve` in a child process on a free port."""

    def __init__(self, data_dir: Path, *args: str, config: str | None = None) -> None:
        cmd = [sys.executable, str(ROOT / "cli.py")]
        if config is not None:
            path = data_dir / "cooccur.toml"
            path.write_text(config)
            cmd += ["-c", str(path)]
        cmd += ["serve", "--port", "0", "--data-dir", str(data_dir), *args]
        env = {**os.environ, "COOCCUR_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        lines = []
        for _ in range(10):
            lines.append(self.proc.stderr.readline())
            m = re.search(r"http://127\.0\.0\.1:(\d+) with", lines[-1])
            if m:
                self.port = int(m.group(1))
                return
        self.stop()
        raise AssertionError(f"the server did not start: {lines}")

    def call(self, method: str, path: str, body=None, raw: bytes | None = None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            text = resp.read()
            return resp.status, (strict_loads(text) if text else None)
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """`serve --workers 1`: waitress in one process (one for the module: tests only query it
    and store events)."""
    tmp_path = tmp_path_factory.mktemp("served")
    make_backend(tmp_path)
    server = Server(tmp_path, "--workers", "1", "--threads", "2",
                    config="[serve]\nmax_connections = 300\nrequest_timeout = 30\n")
    yield server
    server.stop()


def _slow_client(port: int) -> socket.socket:
    """Headers and half a body, then nothing (finding 3's slow client)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /queries.json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 100\r\n\r\n{\"num\": ")
    return s


def test_200_slow_clients_do_not_block_queries(one_process):
    """Finding 3: slow clients past the old connection limit made every query time out."""
    held = [_slow_client(one_process.port) for _ in range(200)]
    try:
        time.sleep(0.5)  # let the server take them all
        for _ in range(5):
            started = time.monotonic()
            status, body = one_process.call("POST", "/queries.json", {"num": 2}, timeout=5)
            assert status == 200 and len(body["itemScores"]) == 2
            assert time.monotonic() - started < 1.0
    finally:
        for s in held:
            s.close()


def test_over_the_connection_limit_is_a_json_503(tmp_path):
    make_backend(tmp_path)
    server = Server(tmp_path, "--workers", "1", config="[serve]\nmax_connections = 5\nrequest_timeout = 1\n")
    try:
        held = [_slow_client(server.port) for _ in range(5)]
        time.sleep(0.3)
        status, body = server.call("GET", "/health")
        assert status == 503 and "too many open connections" in body["error"]
        # The slow ones are cut off after request_timeout; then the server answers again.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, body = server.call("GET", "/health")
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200
        for s in held:
            assert s.recv(100) == b""  # closed by the server
            s.close()
    finally:
        server.stop()


def test_gunicorn_drops_a_request_not_received_in_time(tmp_path):
    """Under gunicorn (--workers 2, one thread each) a slow client holds a thread only until
    request_timeout; then the thread answers queries again."""
    make_backend(tmp_path)
    server = Server(tmp_path, "--workers", "2", config="[serve]\nrequest_timeout = 1\n")
    try:
        held = [_slow_client(server.port) for _ in range(4)]
        started = time.monotonic()
        status, _ = server.call("POST", "/queries.json", {"num": 1}, timeout=20)
        assert status == 200 and time.monotonic() - started < 10
        for s in held:  # each got a JSON 408 for its body, then the connection closed
            s.settimeout(10)
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
            s.close()
            assert reply.startswith(b"HTTP/1.1 408") and b'"field": "(body)"' in reply
        # Half the headers: dropped without an answer.
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        assert s.recv(100) == b""
        s.close()
    finally:
        server.stop()


def test_body_over_the_limit_is_json(one_process):
    """Finding 10: a 2 MB body got waitress's plain-text 413."""
    body = b"[" + b"1," * 1_000_000 + b"1]"
    with socket.create_connection(("127.0.0.1", one_process.port), timeout=30) as s:
        s.sendall(b"POST /queries.json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))

        def send_body() -> None:
            # the server answers from Content-Length and closes: a broken pipe here
            with contextlib.suppress(OSError):
                s.sendall(body)

        # read the answer while the body is still going out, as browsers and proxies do
        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        response = http.client.HTTPResponse(s)
        response.begin()
        assert response.status == 413 and "error" in strict_loads(response.read())
        sender.join(timeout=30)


def user_event(**changes):
    return {"event": "view", "entityType": "user", "entityId": "u", "targetEntityType": "item",
            "targetEntityId": "a", **changes}


CLIENT_ERRORS = [
    # finding 1 and 5: lone surrogates, stored then fatal to every update; or a 500
    ("/events.json", json.dumps({"event": "$set", "entityType": "item", "entityId": "a",
                                 "properties": {"t": "\udc00"}}), "properties.t"),
    ("/events.json", json.dumps(user_event(entityId="\udc00")), "entityId"),
    ("/events.json", json.dumps(user_event(targetEntityId="\udc00")), "targetEntityId"),
    ("/queries.json", json.dumps({"user": "\udc00"}), "user"),
    # finding 5: dates that overflow, a 5,001-digit number
    ("/events.json", json.dumps(user_event(eventTime="9999-12-31T23:59:59-12:00")), "eventTime"),
    ("/events.json", json.dumps(user_event(eventTime="0001-01-01T00:00:00+01:00")), "eventTime"),
    ("/queries.json", '{"currentDate": "9999-12-31T23:59:59-12:00"}', "currentDate"),
    ("/queries.json", '{"num": %s}' % ("1" * 5001), "(body)"),
    # finding 6: biases that overflow the scores
    ("/queries.json", '{"fields": [{"name": "category", "values": ["x"], "bias": 1e308}]}', "fields[0].bias"),
    ("/queries.json", '{"history": {"purchase": ["a"]}, "userBias": 1e39}', "userBias"),
    ("/queries.json", '{"num": NaN}', "(body)"),
    # finding 8: a number is not an id
    ("/events.json", json.dumps(user_event(entityId=5)), "entityId"),
    # finding 10: date properties (with the batch index), a rule on a date field
    ("/events.json", json.dumps([user_event(), {"event": "$set", "entityType": "item", "entityId": "a",
                                                "properties": {"date": ["2020-01-01", "garbage"]}}]),
     "[1].properties.date"),
    ("/events.json", json.dumps([user_event(), {"event": "$set", "entityType": "item", "entityId": "a",
                                                "properties": {"date": "garbage"}}]), "[1].properties.date"),
    ("/queries.json", '{"fields": [{"name": "date", "values": ["x"], "bias": 2}]}', "fields[0].name"),
]


@pytest.mark.parametrize("path,body,field", CLIENT_ERRORS, ids=[f"{p}:{f}" for p, _, f in CLIENT_ERRORS])
def test_client_errors_are_4xx_json_naming_the_field(one_process, path, body, field):
    status, reply = one_process.call("POST", path, raw=body.encode(), headers=AUTH)
    assert status == 400 and reply["field"] == field, reply


def test_unset_on_an_unknown_item_creates_no_document(one_process):
    """Finding 7: it became an empty document, served as backfill."""
    status, _ = one_process.call("POST", "/events.json", {"event": "$unset", "entityType": "item",
                                                          "entityId": "ghost", "properties": {"x": None}},
                                 headers=AUTH)
    assert status == 201
    status, body = one_process.call("POST", "/queries.json", {"num": 100})
    assert status == 200 and "ghost" not in [s["item"] for s in body["itemScores"]]


def test_head_health(one_process):
    """Finding 10: HEAD /health was 405."""
    assert one_process.call("HEAD", "/health") == (200, None)


def test_health_tells_the_truth_and_agrees_with_doctor(tmp_path):
    """Finding 4: a truncated file in the current version gave 500 on every query while
    /health said 200; binary bytes in CURRENT gave 500 on both (and a `recommend` traceback)."""
    from click.testing import CliRunner

    from cli import main

    backend = make_backend(tmp_path)
    version = backend.versions()[0].name
    ids = tmp_path / "items" / version / "ids.npy"
    ids.write_bytes(ids.read_bytes()[:40])
    server = Server(tmp_path, "--workers", "1")
    try:
        status, body = server.call("GET", "/health")
        assert status == 503 and "cannot be loaded" in body["error"] and version in body["error"]
        status, reply = server.call("POST", "/queries.json", {"num": 2})
        assert status == 503 and "cannot be loaded" in reply["error"]
    finally:
        server.stop()
    doctor = CliRunner().invoke(main, ["doctor", "--data-dir", str(tmp_path)])
    assert doctor.exit_code == 1 and f"FAIL  embedded index: {body['error']}" in doctor.output

    (tmp_path / "items" / "CURRENT").write_bytes(b"\xff\xfe\x00garbage")
    server = Server(tmp_path, "--workers", "1")
    try:
        status, body = server.call("GET", "/health")
        assert status == 503 and "CURRENT cannot be read" in body["error"]
    finally:
        server.stop()
    r = CliRunner().invoke(main, ["recommend", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1 and "CURRENT cannot be read" in r.output and "Hint: `cooccur rollback`" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


# ----------------------------------------------------------------------------- the CLI
def cli(*args, config: str | None = None, tmp_path: Path | None = None):
    from click.testing import CliRunner

    from cli import main

    pre = []
    if config is not None:
        path = tmp_path / "c.toml"
        path.write_text(config)
        pre = ["-c", str(path)]
    return CliRunner().invoke(main, [*pre, *map(str, args)])


def assert_clean_error(r, *needles: str) -> None:
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output and "Error: " in r.output
    for needle in needles:
        assert needle in r.output, r.output


def test_a_misspelt_section_is_an_error(tmp_path):
    """Finding 2: `[server] token = ...` started the server with open writes."""
    r = cli("serve", "--data-dir", tmp_path, config='[server]\ntoken = "x"\n', tmp_path=tmp_path)
    assert_clean_error(r, "unknown section [server]: did you mean [serve]?")


@pytest.mark.parametrize("code,needle", [(28, "free some disk space"), (30, "read-only")])
def test_index_on_a_full_disk_or_read_only_mount(tmp_path, monkeypatch, code, needle):
    """Finding 9: `index` on a full disk or a read-only mount printed a traceback."""
    from test_cli_index import write_model

    from indexer.embedded import EmbeddedBackend

    def fail(self, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(self.root))

    monkeypatch.setattr(EmbeddedBackend, "_write_version", fail)
    r = cli("index", write_model(tmp_path / "model"), "--data-dir", tmp_path / "data")
    assert_clean_error(r, os.strerror(code), needle)


def test_rollback_on_a_read_only_mount(tmp_path, monkeypatch):
    """Finding 9: `rollback` on a read-only mount printed a traceback."""
    from indexer.embedded import EmbeddedBackend

    backend = make_backend(tmp_path)
    backend.create_version(backend.versions()[0].schema, [{"id": "x"}])

    def read_only(self, *args):
        raise OSError(30, os.strerror(30), str(self.root / "CURRENT"))

    monkeypatch.setattr(EmbeddedBackend, "_set_current", read_only)
    assert_clean_error(cli("rollback", "--data-dir", tmp_path), "Read-only file system", "read-only")


def test_spark_conf_errors(tmp_path):
    """Finding 9 and 10: a bad Spark value printed a Java traceback; an unknown key passed."""
    events = tmp_path / "e.csv"
    events.write_text("user,event,item,time\nu1,buy,i1,2026-01-01\n")
    r = cli("train", events, "-o", tmp_path / "m", "--conf", "driver.memory=4g")
    assert_clean_error(r, "not a Spark setting")
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", str(events), "-o", str(tmp_path / "m"),
                           "--primary", "buy", "--conf", "spark.driver.memory=abc"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1 and "Error: Spark failed" in done.stderr and "Traceback" not in done.stderr


def test_killed_writers_leftovers_are_cleaned_and_a_half_replaced_model_restored(tmp_path):
    """Finding 10: a killed `update` left `.MODEL.tmp-PID` / `.MODEL.old-PID` forever; a
    half-replaced model (renamed aside, the new one not yet in) made `index` fail."""
    from test_cli_index import write_model

    dead = 2 ** 22 + 12345  # above pid_max's default: no such process
    model = write_model(tmp_path / "model")
    (tmp_path / f".model.tmp-{dead}" / "state").mkdir(parents=True)
    model.rename(tmp_path / f".model.old-{dead}")
    r = cli("index", model, "--data-dir", tmp_path / "data")
    assert r.exit_code == 0, r.output
    assert (model / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model"]


def test_import_refuses_what_the_http_api_refuses(tmp_path):
    """A date property that is no date: 400 over HTTP, a rejected row in `events import`
    (before, the import stored it and then failed)."""
    make_backend(tmp_path)
    f = tmp_path / "items.jsonl"
    f.write_text('{"event": "$set", "entityType": "item", "entityId": "i1", "properties": {"date": "soon"}}\n'
                 '{"event": "view", "entityType": "user", "entityId": "u1", "targetEntityId": "i1"}\n')
    r = cli("events", "import", f, "--data-dir", tmp_path)
    assert_clean_error(r, "1 of 2 rows rejected, nothing imported", f"{f}:1: properties.date:")
