"""The event-driven HTTP client against a raw TCP peer on loopback that answers as real servers do: Content-Length,
chunked and close-delimited bodies, Connection: close, a keep-alive connection the server closed without answering
(a failed request, never sent twice), HEAD, a server that never answers, a port nobody listens on."""

from __future__ import annotations

import asyncio
import socket

import pytest

from perfdesk.controllers.httpclient import AsyncHttpClient
from perfdesk.controllers.results import ERROR, OK, TIMEOUT, RequestResult


def _parse(status, data, headers, t0, t1) -> RequestResult:
    return RequestResult(
        actual_send=t0, receive=t1, status=OK, http_status=status, error=f"{data.decode()}|{headers.get('X-Tag')}"
    )


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return head + body


class Peer:
    """Answers each request with the next canned answer; ``close_after``: close the connection after that answer."""

    def __init__(self, answers: list[tuple[bytes, bool]]):
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader, writer):
        self.connections += 1
        try:
            while self.answers:
                req = await _read_request(reader)
                self.requests.append(req)
                answer, close = self.answers.pop(0)
                if answer:
                    writer.write(answer)
                    await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


async def _serve(peer: Peer):
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_bodies_headers_keep_alive_and_a_stale_connection():
    async def main():
        peer = Peer(
            [
                (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-tag: a\r\n\r\nhi", False),
                (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Tag: b\r\n\r\n3\r\nabc\r\n0\r\n\r\n", False),
                # the server closes the kept-alive connection on the next request without a word (it had timed the
                # connection out): that request failed (never sent twice), the next one takes a new connection
                (b"", True),
                (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz", True),
                (b"HTTP/1.0 200 OK\r\n\r\nuntil-close", True),
            ]
        )
        server, port = await _serve(peer)
        client = AsyncHttpClient(f"http://127.0.0.1:{port}/predict?x=1", parse=_parse)
        results = [await client.request(b'{"a": 1}', {"Content-Type": "application/json"}) for _ in range(5)]
        await client.close()
        server.close()
        return peer, results

    peer, results = asyncio.run(main())
    assert [(r.status, r.http_status, r.error) for r in results] == [
        (OK, 200, "hi|a"),  # headers case-insensitive
        (OK, 201, "abc|b"),  # chunked
        (ERROR, None, "connection: Remote end closed connection without a response"),  # never sent twice
        (OK, 200, "z|None"),  # on a new connection
        (OK, 200, "until-close|None"),  # a close-delimited body
    ]
    first = peer.requests[0]
    assert first.startswith(b"POST /predict?x=1 HTTP/1.1\r\n") and b"Content-Length: 8\r\n" in first
    assert first.endswith(b'\r\n\r\n{"a": 1}') and b"Content-Type: application/json" in first
    assert peer.connections == 3 and len(peer.requests) == 5  # one kept alive for three requests; two after closes


def test_a_reused_connection_carries_the_next_request():
    async def main():
        peer = Peer([(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1", False) for _ in range(5)])
        server, port = await _serve(peer)
        client = AsyncHttpClient(f"http://127.0.0.1:{port}/", parse=_parse, method="GET")
        results = [await client.request(None, {}) for _ in range(5)]
        await client.close()
        server.close()
        return peer, results

    peer, results = asyncio.run(main())
    assert all(r.status == OK for r in results) and peer.connections == 1
    assert peer.requests[0].startswith(b"GET / HTTP/1.1\r\n") and b"Content-Length" not in peer.requests[0]


def test_head_timeout_refused_and_a_connection_closed_without_answer():
    async def main():
        peer = Peer(
            [
                (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", False),  # HEAD: no body follows
            ]
        )
        server, port = await _serve(peer)
        head = await AsyncHttpClient(f"http://127.0.0.1:{port}/", parse=_parse, method="HEAD").request(None, {})
        server.close()

        silent = Peer([(b"", False), (b"", False)])  # reads the request, never answers
        server2, port2 = await _serve(silent)
        slow = await AsyncHttpClient(f"http://127.0.0.1:{port2}/", parse=_parse).request(b"x", {}, timeout=0.3)
        server2.close()

        hangup = Peer([(b"", True)])  # reads the request, closes without a word
        server3, port3 = await _serve(hangup)
        closed = await AsyncHttpClient(f"http://127.0.0.1:{port3}/", parse=_parse).request(b"x", {})
        server3.close()

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        refused = await AsyncHttpClient(f"http://127.0.0.1:{free}/", parse=_parse).request(b"x", {})
        return head, slow, closed, refused

    head, slow, closed, refused = asyncio.run(main())
    assert (head.status, head.http_status) == (OK, 200)
    assert slow.status == TIMEOUT and slow.receive - slow.actual_send == pytest.approx(0.3, abs=0.25)
    assert closed.status == ERROR and closed.error == "connection: Remote end closed connection without a response"
    assert refused.status == ERROR and refused.error.startswith("connection: [Errno 111]")
    assert "refused" in refused.error.lower()


def test_not_an_http_url():
    with pytest.raises(ValueError, match="not an http"):
        AsyncHttpClient("ftp://example.com/", parse=_parse)
