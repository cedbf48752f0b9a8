"""Manifest extras: RTT measured against a real listening socket on loopback, endpoints, versions, hashes."""

from __future__ import annotations

import hashlib
import socket

import pytest

from perfdesk.controllers.provenance import manifest_extras, sha256_file, target_endpoint, tcp_rtt


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # the kernel completes the handshakes; nothing needs to accept
    yield server.getsockname()[1]
    server.close()


def test_tcp_rtt_to_a_listening_port(listener):
    result = tcp_rtt("127.0.0.1", listener, samples=4)
    assert result["error"] == "" and len(result["samples_ms"]) == 4
    assert 0 < result["min_ms"] <= result["median_ms"] <= result["max_ms"]


def test_tcp_rtt_reports_a_refused_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # bound then closed: nothing listens there
    result = tcp_rtt("127.0.0.1", port, samples=3, timeout=1)
    assert result["median_ms"] is None and f"127.0.0.1:{port} failed" in result["error"]


def test_target_endpoints():
    assert target_endpoint({"url": "http://127.0.0.1:8123/predict"}) == ("127.0.0.1", 8123)
    assert target_endpoint({"endpoint_url": "https://example.invalid"}) == ("example.invalid", 443)
    assert target_endpoint({"host": "10.0.0.5"}) == ("10.0.0.5", 22)
    assert target_endpoint({"kind": "lambda", "region": "eu-west-1"}) == ("lambda.eu-west-1.amazonaws.com", 443)
    assert target_endpoint({"kind": "local-server"}) is None


def test_manifest_extras(listener, tmp_path):
    extras = manifest_extras({"srv": {"url": f"http://127.0.0.1:{listener}"}, "odd": {}}, rtt_samples=2)
    assert extras["rtt"]["srv"]["median_ms"] > 0
    assert "no endpoint" in extras["rtt"]["odd"]["error"]
    assert extras["client"]["hostname"] and extras["client"]["cores"]
    assert extras["software"]["numpy"] and "pandas" in extras["software"]
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"x" * 3_000_000)
    assert sha256_file(weights, chunk=1 << 16) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
