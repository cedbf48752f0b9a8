"""The inference agent: a Flask app served by gunicorn (never the Werkzeug development server).

Shipped to hosts as is: imports perfdesk.shipped.inference and nothing of the controller side.

Endpoints (all need ``Authorization: Bearer <token>``):
- ``POST /predict``: ``application/json`` ``{"images": [base64, ...], "top_k", "score_threshold", "annotate"}``,
  or one raw image (``image/jpeg``, ``image/png``, ``image/webp``). Returns the predictions and the server-side
  timings (decode, preprocess, inference, postprocess). Bad payloads get a 4xx with a JSON ``error``.
- ``GET /metrics``: psutil figures of the host and of the agent's process tree.
- ``GET /healthz``: ready once the model is loaded; the model's facts and load time.

The token comes from ``--token-file`` (read, then kept in memory) or the PERFDESK_AGENT_TOKEN environment
variable; never from the command line, where ``ps`` would show it.

Run: ``python -m perfdesk.shipped.agent --port 8080 --token-file token --model resnet50``
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import signal
import sys
import threading
import time

from perfdesk.shipped.options import EngineConfig

log = logging.getLogger("perfdesk.agent")

MAX_BODY_BYTES = 32 * 1024 * 1024
DRAIN_LIMIT = 256 * 1024 * 1024
_T0 = time.time()


def _json_error(status: int, message: str):
    from flask import jsonify

    resp = jsonify(error=message, status=status)
    resp.status_code = status
    return resp


class Metrics:
    """psutil figures of the host and of the agent's process tree (gunicorn master and workers)."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        psutil.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None, percpu=True)
        self._lock = threading.Lock()

    def _tree(self):
        psutil = self.psutil
        me = psutil.Process()
        root = me
        try:
            parent = me.parent()
            # under gunicorn we are a worker: count the master and every worker
            if parent is not None and ("perfdesk" in " ".join(parent.cmdline()) or "gunicorn" in parent.name()):
                root = parent
        except (psutil.Error, OSError):
            pass
        procs = [root]
        try:
            procs += root.children(recursive=True)
        except psutil.Error:
            pass
        return procs

    def sample(self) -> dict:
        psutil = self.psutil
        with self._lock:
            total = psutil.cpu_percent(interval=None)
            per_core = psutil.cpu_percent(interval=None, percpu=True)
        rss = 0
        threads = 0
        for p in self._tree():
            try:
                rss += p.memory_info().rss
                threads += p.num_threads()
            except psutil.Error:
                continue
        load1, load5, load15 = os.getloadavg()
        return {
            "cpu_percent": total,
            "cpu_per_core": per_core,
            "rss_mb": rss / 2**20,
            "mem_percent": psutil.virtual_memory().percent,
            "load1": load1,
            "load5": load5,
            "load15": load15,
            "threads": threads,
            "cores": psutil.cpu_count(),
        }


def create_app(engine, token: str, *, max_body_bytes: int = MAX_BODY_BYTES, ready_info: dict | None = None):
    """The Flask app around a loaded inference engine (``perfdesk.shipped.inference`` API)."""
    from flask import Flask, jsonify, request
    from werkzeug.exceptions import HTTPException

    from perfdesk.shipped.inference import BadInput, InferenceError

    app = Flask("perfdesk-agent")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    metrics = Metrics()
    expected = f"Bearer {token}".encode()
    info = dict(ready_info or {})

    def _drain(limit: int = DRAIN_LIMIT) -> None:
        # read (and drop) a rejected body so that the client, still sending, gets our answer rather than a reset
        # connection; beyond DRAIN_LIMIT the connection is simply closed
        length = request.content_length or 0
        if length <= limit:
            stream = request.environ["wsgi.input"]
            while length > 0:
                chunk = stream.read(min(length, 1 << 20))
                if not chunk:
                    break
                length -= len(chunk)

    @app.before_request
    def _auth():
        got = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(got, expected):
            _drain(max_body_bytes)
            return _json_error(401, "missing or wrong bearer token")
        if (request.content_length or 0) > max_body_bytes:
            _drain()
            return _json_error(
                413, f"body of {request.content_length} bytes is larger than the limit of {max_body_bytes} bytes"
            )
        return None

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return _json_error(exc.code or 500, exc.description or exc.name)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", pid=os.getpid(), uptime_s=time.time() - _T0, model=engine.info, **info)

    @app.get("/metrics")
    def metrics_():
        return jsonify(metrics.sample())

    @app.post("/predict")
    def predict():
        ctype = (request.mimetype or "").lower()
        t0 = time.perf_counter()
        try:
            if ctype == "application/json":
                raw = request.get_data(cache=False)
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as exc:
                    return _json_error(400, f"body is not valid JSON: {exc}")
                if not isinstance(body, dict):
                    return _json_error(400, "JSON body must be an object with an 'images' list")
                result = engine.predict_request(body)
            elif ctype in ("image/jpeg", "image/png", "image/webp"):
                data = request.get_data(cache=False)
                if not data:
                    return _json_error(400, "empty image body")
                args = request.args
                try:
                    top_k = int(args.get("top_k", 5))
                    threshold = float(args.get("score_threshold", 0.5))
                except ValueError:
                    return _json_error(400, "top_k must be an integer and score_threshold a number")
                result = engine.predict(
                    [data], top_k=top_k, score_threshold=threshold, annotate=args.get("annotate", "") in ("1", "true")
                )
            else:
                return _json_error(
                    415, f"unsupported content type {ctype or '(none)'}: send application/json or image/jpeg|png|webp"
                )
        except BadInput as exc:
            return _json_error(400, str(exc))
        except InferenceError as exc:
            return _json_error(422, str(exc))
        result.setdefault("timings", {})["server_ms"] = (time.perf_counter() - t0) * 1000.0
        return jsonify(result)

    return app


def _read_token(path: str | None) -> str:
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise SystemExit(f"perfdesk agent: cannot read --token-file {path}: {exc.strerror}") from None
    else:
        token = os.environ.pop("PERFDESK_AGENT_TOKEN", "")
    if len(token) < 16:
        raise SystemExit(
            "perfdesk agent: a token of at least 16 characters is required (--token-file or PERFDESK_AGENT_TOKEN)"
        )
    return token


def build_app_from_args(args, token: str):
    """Load the model (timed) and build the app: called in each gunicorn worker."""
    t0 = time.perf_counter()
    from perfdesk.shipped.inference import load_engine

    imported = time.perf_counter()
    engine = load_engine(EngineConfig.from_args(args))
    loaded = time.perf_counter()
    info = {"agent_import_ms": (imported - t0) * 1000.0, "agent_load_ms": (loaded - t0) * 1000.0}
    log.info(
        "model %s on %s loaded in %.0f ms (random weights: %s)",
        args.model,
        args.runtime,
        info["agent_load_ms"],
        engine.info.get("random_weights"),
    )
    return create_app(engine, token, max_body_bytes=args.max_body_mb * 2**20, ready_info=info)


def _watch_parent(parent_pid: int) -> None:
    """Exit (SIGTERM to ourselves, gunicorn's graceful stop) when the process that started us is gone."""

    def loop() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                try:
                    os.kill(parent_pid, 0)
                    continue  # double fork / reparenting to a subreaper with the parent still alive
                except OSError:
                    pass
                log.warning("parent %d is gone; stopping", parent_pid)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def serve(args) -> None:
    from gunicorn.app.base import BaseApplication

    token = _read_token(args.token_file)
    options = {
        "bind": f"{args.host}:{args.port}",
        "workers": args.workers,
        "threads": args.wsgi_threads,
        "worker_class": "gthread" if args.wsgi_threads > 1 else "sync",
        "timeout": args.worker_timeout,
        "graceful_timeout": 5,
        "keepalive": 30,
        "accesslog": None,
        "errorlog": args.log_file or "-",
        "loglevel": "info",
        "pidfile": args.pid_file,
        "preload_app": False,
        "proc_name": "perfdesk-agent",
        "backlog": 2048,
    }
    from gunicorn.config import KNOWN_SETTINGS

    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        # gunicorn >= 24 opens a control socket in ~/.gunicorn by default: one shared path for every agent on the
        # host, and a way in that perfdesk does not use
        options["control_socket_disable"] = True
    if args.parent_pid:
        options["when_ready"] = lambda server: _watch_parent(args.parent_pid)

    class AgentApplication(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self):
            logging.basicConfig(
                level=logging.INFO, format="%(asctime)s [%(process)d] %(levelname)s %(message)s", stream=sys.stderr
            )
            return build_app_from_args(args, token)

    AgentApplication().run()


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The agent's options (``perfdesk agent`` and ``python -m perfdesk.shipped.agent`` share them)."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on")
    p.add_argument("--token-file", help="file holding the bearer token (else PERFDESK_AGENT_TOKEN)")
    EngineConfig.add_arguments(p)
    p.add_argument("--workers", type=int, default=1, help="gunicorn worker processes (one model each)")
    p.add_argument("--wsgi-threads", type=int, default=4, help="request threads per worker")
    p.add_argument("--worker-timeout", type=int, default=300, help="gunicorn worker timeout, seconds")
    p.add_argument("--max-body-mb", type=int, default=32, help="largest request body accepted, MB")
    p.add_argument("--log-file", default=None, help="log file (default stderr)")
    p.add_argument("--pid-file", default=None, help="pid file of the gunicorn master")
    p.add_argument("--parent-pid", type=int, default=None, help="stop when this process is gone")
    return p


def parser() -> argparse.ArgumentParser:
    return add_arguments(
        argparse.ArgumentParser(prog="perfdesk agent", description="perfdesk inference agent (Flask under gunicorn)")
    )


def main(argv: list[str] | None = None) -> None:
    serve(parser().parse_args(argv))


if __name__ == "__main__":
    main()
