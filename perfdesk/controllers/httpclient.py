"""The event-driven HTTP client of HTTP-speaking targets (agent targets, ``http`` targets): aiohttp on one event loop,
a keep-alive connection per request in flight, no thread per request.

A target makes one :class:`AsyncHttpClient` per load level inside the load generator's loop
(:meth:`perfdesk.controllers.target.Target.async_client`); the target supplies the body and headers of a payload and
how an answer becomes a :class:`RequestResult` (``parse``), so the wire format stays the target's business.
aiohttp is imported when the first client is made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from perfdesk import __version__
from perfdesk.controllers.results import ERROR, TIMEOUT, RequestResult

#: (HTTP status, body, response headers, send time, receive time) -> the request's result
ParseFn = Callable[[int, bytes, Mapping[str, str], float, float], RequestResult]

USER_AGENT = f"perfdesk/{__version__}"


class AsyncHttpClient:
    """Requests to one URL from one event loop. ``limit``: connections at most (0: one per request in flight)."""

    def __init__(self, url: str, *, parse: ParseFn, method: str = "POST", limit: int = 0, verify_tls: bool = True):
        import aiohttp
        from yarl import URL

        self._aiohttp = aiohttp
        self.url = URL(url)
        self.method = method
        self._parse = parse
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=None, ssl=verify_tls)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            headers={"User-Agent": USER_AGENT},
        )

    async def request(
        self, body: bytes | None, headers: Mapping[str, str], *, timeout: float | None = None
    ) -> RequestResult:
        """One request; never raises for a failed request (cancellation excepted). ``timeout``: seconds for the
        whole request (None: the caller enforces its own, as the load generator does)."""
        aiohttp = self._aiohttp
        kwargs = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout is not None else {}
        t0 = time.time()
        try:
            async with self._session.request(self.method, self.url, data=body, headers=headers, **kwargs) as resp:
                data = await resp.read()
                t1 = time.time()
                status, resp_headers = resp.status, resp.headers
        except TimeoutError as exc:
            return RequestResult(actual_send=t0, receive=time.time(), status=TIMEOUT, error=f"timed out: {exc}")
        except (aiohttp.ClientError, OSError) as exc:
            return RequestResult(actual_send=t0, receive=time.time(), status=ERROR, error=f"connection: {exc}")
        return self._parse(status, data, resp_headers, t0, t1)

    async def close(self) -> None:
        await self._session.close()
        await asyncio.sleep(0)  # let the connector's transports close in this loop
