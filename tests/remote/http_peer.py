"""A small local HTTP endpoint for the http target's tests (run as ``python http_peer.py``; prints its port).

Speaks TF-Serving-like REST (``POST /v1/models/m:predict``, ``{"instances": [{"b64": ...}]}``) and KServe v2
(``POST /v2/models/m/infer``), echoes what it got (``/echo``, then ``GET /last``), holds answers (``/slow?ms=&tag=``,
counting answers written and the most in flight per tag: ``GET /stats?tag=``), and fails on purpose (``/fail``).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import sys

from aiohttp import web

last: dict = {}
served: dict[str, int] = {}
in_flight: dict[str, int] = {}
most: dict[str, int] = {}


def _scores(img: bytes) -> list[float]:
    # a deterministic "model": three class scores from the image's length, the top one at index len % 3
    top = len(img) % 3
    return [0.8 if i == top else 0.1 for i in range(3)]


async def tf_predict(request: web.Request) -> web.Response:
    doc = await request.json()
    instances = doc["instances"]
    preds = [_scores(base64.b64decode(inst["b64"])) for inst in instances]
    return web.json_response({"predictions": preds}, headers={"X-Server-Ms": "1.25"})


async def v2_infer(request: web.Request) -> web.Response:
    doc = await request.json()
    tensor = doc["inputs"][0]
    if tensor["datatype"] != "BYTES" or tensor["shape"] != [len(tensor["data"])]:
        return web.json_response({"error": "bad tensor"}, status=400)
    data = _scores(base64.b64decode(tensor["data"][0]))
    return web.json_response(
        {
            "model_name": "m",
            "outputs": [{"name": "scores", "shape": [1, 3], "datatype": "FP32", "data": data}],
            "timing": {"compute_ms": 2.5},
        },
        headers={"Server-Timing": "infer;dur=3.5"},
    )


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    last.clear()
    last.update(body=body.decode("latin-1"), headers=dict(request.headers), method=request.method)
    return web.json_response({"ok": True, "len": len(body)})


async def get_last(request: web.Request) -> web.Response:
    return web.json_response(last)


async def slow(request: web.Request) -> web.StreamResponse:
    await request.read()
    tag = request.query.get("tag", "")
    in_flight[tag] = in_flight.get(tag, 0) + 1
    most[tag] = max(most.get(tag, 0), in_flight[tag])
    try:
        await asyncio.sleep(float(request.query.get("ms", "0")) / 1000.0)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"ok": true}')
        await resp.write_eof()
        served[tag] = served.get(tag, 0) + 1  # the answer is written: the client may now have it
        return resp
    finally:
        in_flight[tag] -= 1


async def stats(request: web.Request) -> web.Response:
    tag = request.query.get("tag", "")
    return web.json_response({"served": served.get(tag, 0), "max_in_flight": most.get(tag, 0)})


async def fail(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=500, text="model exploded")


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.add_routes(
        [
            web.post("/v1/models/m:predict", tf_predict),
            web.post("/v2/models/m/infer", v2_infer),
            web.post("/echo", echo),
            web.put("/echo", echo),
            web.get("/last", get_last),
            web.post("/slow", slow),
            web.get("/stats", stats),
            web.post("/fail", fail),
            web.get("/", health),
            web.get("/healthz", health),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    print(sock.getsockname()[1], flush=True)
    web.run_app(app, sock=sock, print=None, handle_signals=True, backlog=4096)


if __name__ == "__main__":
    sys.exit(main())
