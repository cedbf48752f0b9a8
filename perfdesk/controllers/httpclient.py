"""The event-driven HTTP client of HTTP-speaking targets (agent targets, ``http`` targets): HTTP/1.1 keep-alive
connections as asyncio protocols on one event loop (uvloop where installed), answers parsed by httptools (llhttp,
the parser of Node.js, as uvicorn uses it); no thread per request, a connection per request in flight.

Why not aiohttp's client (what this module used first): on the 2-core box, through the whole trial machinery against
a trivial nginx endpoint, aiohttp's client sent 5,700 req/s closed loop and let the open loop's send-time p99 reach
111 ms at 5,000 req/s; this protocol client, in the same run, 15,400-16,400 req/s and 0.26 ms
(benchmarks/README.md). Its work per request is one write of a prebuilt head and body, and the parser's callbacks.

What it speaks: one URL, any method, ``Content-Length`` bodies, answers with ``Content-Length``, chunked or
close-delimited bodies, ``Connection: close`` honoured, TLS for ``https://`` (verified unless ``verify_tls`` is
false). A request is never sent twice: a connection that closes before its answer is a failed request (a row, never
an exception), and the next request takes a new connection.

A target makes one :class:`AsyncHttpClient` per load level inside the load generator's loop
(:meth:`perfdesk.controllers.target.Target.async_client`); the target supplies the body and headers of a payload and
how an answer becomes a :class:`RequestResult` (``parse``), so the wire format stays the target's business.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from urllib.parse import urlsplit

import httptools

from perfdesk import __version__
from perfdesk.controllers.results import ERROR, TIMEOUT, RequestResult

#: (HTTP status, body, response headers, send time, receive time) -> the request's result
ParseFn = Callable[[int, bytes, Mapping[str, str], float, float], RequestResult]

USER_AGENT = f"perfdesk/{__version__}"


class Headers(Mapping[str, str]):
    """An answer's headers, looked up case-insensitively (repeated headers joined with ", " as HTTP allows)."""

    __slots__ = ("_d",)

    def __init__(self, items: dict[str, str]):
        self._d = items  # lower-case names

    def __getitem__(self, key: str) -> str:
        return self._d[key.lower()]

    def get(self, key: str, default=None):
        return self._d.get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"Headers({self._d!r})"


class _Closed(ConnectionError):
    """The connection closed before a whole answer came; ``answered``: some of the answer had come."""

    def __init__(self, message: str, answered: bool):
        super().__init__(message)
        self.answered = answered


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request on it at a time."""

    def __init__(self, head_only: bool = False):
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.body: list[bytes] = []
        self.headers: dict[str, str] = {}
        self.closed = False
        self.started = False  # some of the current answer has come
        self.headers_done = False
        self.head_only = head_only
        self.keep_alive = False  # the answer just completed allows the next request on this connection

    # -- asyncio.Protocol --------------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(_Closed("connection: the server switched protocols", True))
        except httptools.HttpParserError as exc:
            self._fail(_Closed(f"connection: malformed answer: {exc}", True))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        w = self.waiter
        if w is None or w.done():
            return
        if self.headers_done and not self.parser.should_keep_alive() and exc is None:
            # a close-delimited body ends with the connection
            w.set_result(self.parser.get_status_code())
            return
        if exc is not None and getattr(exc, "errno", None):
            msg = f"connection: [Errno {exc.errno}] {exc.strerror}"  # type: ignore[attr-defined]
        elif exc is not None:
            msg = f"connection: {exc}"
        else:
            msg = "connection: Remote end closed connection without a response"
        w.set_exception(_Closed(msg, self.started))

    # -- httptools callbacks -----------------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self.headers.get(key)
        self.headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        self.headers_done = True
        if self.head_only:  # an answer to HEAD has no body, whatever its Content-Length says
            self._done()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self._done()

    # -- ours --------------------------------------------------------------------------------------------------
    def _done(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(self.parser.get_status_code())

    def _fail(self, exc: Exception) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(exc)
        self.close()

    def begin(self, loop: asyncio.AbstractEventLoop, data: bytes) -> asyncio.Future[int]:
        self.body = []
        self.headers = {}
        self.started = self.headers_done = self.keep_alive = False
        w = self.waiter = loop.create_future()
        assert self.transport is not None
        self.transport.write(data)
        return w

    def reusable(self) -> bool:
        return not self.closed and self.keep_alive

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class AsyncHttpClient:
    """Requests to one URL from one event loop. ``limit``: connections at most (0: one per request in flight)."""

    def __init__(self, url: str, *, parse: ParseFn, method: str = "POST", limit: int = 0, verify_tls: bool = True):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.method = method.upper()
        self._parse = parse
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl.create_default_context()
            if not verify_tls:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rsplit("@", 1)[-1]  # never credentials in the Host header
        self._head = f"{self.method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._slots = asyncio.Semaphore(limit) if limit > 0 else None

    def _encode(self, body: bytes | None, headers: Mapping[str, str]) -> bytes:
        head = self._head
        if body is not None or self.method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body or b'')}\r\n"
        for k, v in headers.items():
            head += f"{k}: {v}\r\n"
        data = (head + "\r\n").encode("latin-1")
        return data + body if body else data

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: _Connection(self.method == "HEAD"),
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl is not None else None,
        )
        self._all.add(conn)
        return conn

    async def _exchange(self, data: bytes) -> tuple[int, bytes, Headers, _Connection]:
        loop = asyncio.get_running_loop()
        conn = None
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                break
            conn = None
        if conn is None:
            conn = await self._connect()
        try:
            status = await conn.begin(loop, data)
        except _Closed:
            # never sent again, not even on a kept-alive connection the server had closed: the request may have
            # reached it (POST is not idempotent), and a resend right after a broken link (an SSH forward that
            # dropped) can wait on the dead link; the failure is a row, the next request takes a new connection
            self._all.discard(conn)
            raise
        except BaseException:
            # cancelled (the load generator's timeout or the level's end) or failed: the answer may still
            # come on this connection, so it is never reused
            conn.close()
            self._all.discard(conn)
            raise
        return status, b"".join(conn.body), Headers(conn.headers), conn

    async def request(
        self, body: bytes | None, headers: Mapping[str, str], *, timeout: float | None = None
    ) -> RequestResult:
        """One request; never raises for a failed request (cancellation excepted). ``timeout``: seconds for the
        whole request (None: the caller enforces its own, as the load generator does)."""
        data = self._encode(body, headers)
        t0 = time.time()
        if self._slots is not None:
            await self._slots.acquire()
        try:
            if timeout is None:
                status, payload, resp_headers, conn = await self._exchange(data)
            else:
                async with asyncio.timeout(timeout):
                    status, payload, resp_headers, conn = await self._exchange(data)
        except TimeoutError as exc:
            return RequestResult(
                actual_send=t0, receive=time.time(), status=TIMEOUT, error=f"timed out: {exc or timeout}"
            )
        except OSError as exc:
            if isinstance(exc, _Closed) or not exc.errno or not exc.strerror:
                error = str(exc) if isinstance(exc, _Closed) else f"connection: {exc}"
            else:
                error = f"connection: [Errno {exc.errno}] {os.strerror(exc.errno)}"
            return RequestResult(actual_send=t0, receive=time.time(), status=ERROR, error=error)
        finally:
            if self._slots is not None:
                self._slots.release()
        t1 = time.time()
        if conn.reusable():
            self._idle.append(conn)
        else:
            conn.close()
            self._all.discard(conn)
        return self._parse(status, payload, resp_headers, t0, t1)

    async def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports close in this loop
