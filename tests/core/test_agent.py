"""The inference agent's HTTP API, served for real by gunicorn in a subprocess."""

import base64
import io
import json
import subprocess
import time

import pytest
import urllib3

from perfdesk.controllers.workload import bundled_photos
from perfdesk.remote.local import free_port
from tests.conftest import PYTHON, agent_env

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    port = free_port()
    token_file = tmp_path_factory.mktemp("agent") / "token"
    token_file.write_text(TOKEN)
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "perfdesk.shipped.agent",
            "--port",
            str(port),
            "--token-file",
            str(token_file),
            "--model",
            "mobilenet_v2",
            "--threads",
            "1",
            "--max-body-mb",
            "1",
            "--wsgi-threads",
            "2",
        ],
        env=agent_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    http = urllib3.HTTPConnectionPool("127.0.0.1", port, retries=False, timeout=30)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if http.request("GET", "/healthz", headers=_auth()).status == 200:
                break
        except urllib3.exceptions.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(proc.stdout.read().decode())
    yield http
    proc.terminate()
    proc.wait(10)


def _auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def _photo():
    return bundled_photos()[0][1]


def _json(resp):
    assert resp.headers["Content-Type"].startswith("application/json")
    return json.loads(resp.data)


def test_served_by_gunicorn(agent):
    resp = agent.request("GET", "/healthz", headers=_auth())
    assert "gunicorn" in resp.headers.get("Server", "").lower()
    body = _json(resp)
    assert body["status"] == "ok"
    assert body["model"]["model"] == "mobilenet_v2"
    assert body["model"]["random_weights"] is True
    assert body["agent_load_ms"] > 0


@pytest.mark.parametrize("headers", [{}, _auth("wrong-token-wrong-token"), {"Authorization": "Basic abc"}])
@pytest.mark.parametrize("method,path", [("GET", "/healthz"), ("GET", "/metrics"), ("POST", "/predict")])
def test_token_required(agent, headers, method, path):
    resp = agent.request(method, path, headers=headers, body=b"{}" if method == "POST" else None)
    assert resp.status == 401
    assert "token" in _json(resp)["error"]


def test_metrics(agent):
    m = _json(agent.request("GET", "/metrics", headers=_auth()))
    for key in ("cpu_percent", "cpu_per_core", "rss_mb", "mem_percent", "load1", "load5", "load15", "threads"):
        assert key in m
    assert m["rss_mb"] > 50  # the process tree holds a model
    assert isinstance(m["cpu_per_core"], list) and len(m["cpu_per_core"]) == m["cores"]


def test_predict_json_batch(agent):
    b64 = base64.b64encode(_photo()).decode()
    body = json.dumps({"images": [b64, b64, b64], "top_k": 3}).encode()
    resp = agent.request("POST", "/predict", body=body, headers={**_auth(), "Content-Type": "application/json"})
    assert resp.status == 200
    out = _json(resp)
    assert len(out["predictions"]) == 3
    assert all(len(p) == 3 for p in out["predictions"])
    for key in ("decode_ms", "preprocess_ms", "inference_ms", "postprocess_ms"):
        assert out["timings"][key] >= 0
    assert out["random_weights"] is True


def test_predict_raw_image(agent):
    resp = agent.request("POST", "/predict?top_k=2", body=_photo(), headers={**_auth(), "Content-Type": "image/jpeg"})
    assert resp.status == 200
    assert len(_json(resp)["predictions"][0]) == 2


def _png_bytes():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


BAD = [
    ("not an image", "application/json", json.dumps({"images": [base64.b64encode(b"hello").decode()]}), 400),
    ("bad base64", "application/json", json.dumps({"images": ["***not base64***"]}), 400),
    ("bad json", "application/json", "{not json", 400),
    ("json not object", "application/json", "[1, 2]", 400),
    ("no images", "application/json", json.dumps({"images": []}), 400),
    ("images not a list", "application/json", json.dumps({"images": "abc"}), 400),
    ("wrong content type", "text/plain", "hello", 415),
    ("raw body not an image", "image/png", "garbage", 400),
    ("too large", "application/json", "x" * (2 * 1024 * 1024), 413),
]


@pytest.mark.parametrize("name,ctype,body,status", BAD, ids=[b[0] for b in BAD])
def test_bad_payloads_get_4xx_json_and_server_keeps_serving(agent, name, ctype, body, status):
    resp = agent.request("POST", "/predict", body=body.encode(), headers={**_auth(), "Content-Type": ctype})
    assert resp.status == status, resp.data[:300]
    assert _json(resp)["error"]
    ok = agent.request("POST", "/predict", body=_png_bytes(), headers={**_auth(), "Content-Type": "image/png"})
    assert ok.status == 200


def test_unknown_path_is_json_404(agent):
    resp = agent.request("GET", "/nope", headers=_auth())
    assert resp.status == 404 and _json(resp)["error"]


def test_agent_refuses_to_start_without_token(tmp_path):
    out = subprocess.run(
        [PYTHON, "-m", "perfdesk.shipped.agent", "--port", str(free_port())],
        env={**agent_env(), "PERFDESK_AGENT_TOKEN": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "token" in out.stderr
