"""Hardening (issue 11): every numbered finding of the hostile test run, as a regression test
through the real server (`cooccur serve` as a process) or the CLI."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
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


@pytest.fixture
def one_process(tmp_path):
    """`serve --workers 1`: waitress in one process."""
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
    status, body = one_process.call("POST", "/queries.json", raw=b"[" + b"1," * 1_000_000 + b"1]")
    assert status == 413 and "error" in body
