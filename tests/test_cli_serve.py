"""`cooccur serve` as a real process on a free port."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from query_testdata import make_backend

ROOT = Path(__file__).resolve().parents[1]


def test_serve_process(tmp_path):
    make_backend(tmp_path)
    env = {**os.environ, "COOCCUR_TOKEN": "tok", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "serve", "--port", "0", "--workers", "2", "--data-dir", str(tmp_path)],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        lines = []
        for _ in range(5):  # warnings (this index records no model) come before the ready line
            lines.append(proc.stderr.readline())
            m = re.search(r"http://127\.0\.0\.1:(\d+) with 2 threads \(token required for writes\)", lines[-1])
            if m:
                break
        assert m, lines
        assert "records no model" in lines[0]
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=30)

        def call(method, path, body=None, headers=None):
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())

        assert call("GET", "/health")[0] == 200
        ev = {"event": "purchase", "entityType": "user", "entityId": "u", "targetEntityId": "a"}
        assert call("POST", "/events.json", ev)[0] == 401
        assert call("POST", "/events.json", ev, {"Authorization": "Bearer tok"})[0] == 201
        status, body = call("POST", "/queries.json", {"user": "u", "num": 2})
        # No [query] indicators configured: the user's actions that are index fields count;
        # i1 and i2 tie on purchase:a, popularity orders them (i2 9 > i1 5).
        assert status == 200 and [s["item"] for s in body["itemScores"]] == ["i2", "i1"]
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        proc.stderr.close()
        proc.stdout.close()


def test_serve_bad_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "serve", "--workers", "0", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60,
    )
    assert result.returncode == 1
    assert "Error: [serve] workers: must be at least 1" in result.stderr and "Traceback" not in result.stderr
