"""One Locust node of perfdesk's distributed load (``[load] engine = "locust"``): the master, or a worker.

Run as a file (``python locust_node.py master|worker ...``): it imports only the standard library and Locust (with
its gevent, zmq and urllib3), never perfdesk, so it runs unchanged on any host that has Locust; perfdesk copies this
file to worker hosts.

The nodes use Locust's own master/worker machinery (the master's ``MasterRunner``, each worker's ``WorkerRunner``:
registration, heartbeats, quit) and its custom messages (``runner.register_message``/``send_message``) for
perfdesk's part:

- ``pd_hello`` (worker to master): the worker's name, once connected.
- ``pd_ping``/``pd_pong``: an NTP-like exchange; from the four times of each exchange the master estimates the
  worker's clock offset (``((t1 - t0) + (t2 - t3)) / 2``) from the sample with the least round trip delay.
- ``pd_level`` (master to worker): the worker's share of a level, with the start time in the *worker's* clock and
  the HTTP request (URL, method, headers and bodies): of an open-loop schedule, sequence numbers and send offsets;
  of a closed loop, its clients (each sends back to back) and its request count or the duration.
- ``pd_rows`` (worker to master): finished requests in batches (every ``batch_ms``), one list per request.
- ``pd_done`` (worker to master): the share is sent and every request has finished.
- ``pd_stop`` (master to worker): stop sending now; requests in flight finish and their rows come back.

The master talks to perfdesk over JSON lines: commands on its standard input (``level``, ``stop``, ``quit``; end of
input is ``quit``), events on its standard output (``listening``, ``ready``, ``clock``, ``rows``, ``done``,
``error``, ``bye``). Row times reaching perfdesk are in the master's clock (a worker's times minus its offset).

Both roles end when their standard input ends (the process that started them is gone), so no node outlives perfdesk.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from typing import Any

# a worker's request outcome, the row's fifth field
HTTP, TIMEOUT, ERROR = "http", "timeout", "error"
#: at most this much of a response body comes back (perfdesk parses the server-side timings from it)
MAX_BODY = 1 << 20


def _stdin_lines(hub):
    """Lines of standard input, read in a real thread so the gevent loop keeps running; None at the end."""
    while True:
        line = hub.threadpool.apply(sys.stdin.buffer.readline)
        if not line:
            yield None
            return
        yield line


def _idle_user():
    from locust import User, constant, task

    class Idle(User):
        """Locust needs a user class; perfdesk's load is sent by the ``pd_level`` handler, not by users."""

        wait_time = constant(1)

        @task
        def idle(self) -> None:  # never spawned
            return

    return Idle


# -- the master ---------------------------------------------------------------------------------------------------
class Master:
    def __init__(self, runner, expect: int, clock_samples: int):
        import gevent.event

        self.runner = runner
        self.expect = expect
        self.clock_samples = clock_samples
        self.names: dict[str, str] = {}  # locust client id -> worker name
        self.hello = gevent.event.Event()
        self.pongs: dict[str, Any] = {}
        self.offsets: dict[str, float] = {}  # client id -> worker clock minus master clock, seconds
        self.done: dict[str, dict] = {}
        self.level_id = None
        self.all_done = gevent.event.Event()
        runner.register_message("pd_hello", self.on_hello)
        runner.register_message("pd_pong", self.on_pong)
        runner.register_message("pd_rows", self.on_rows)
        runner.register_message("pd_done", self.on_done)

    def emit(self, **event) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def on_hello(self, environment, msg) -> None:
        self.names[msg.node_id] = msg.data["name"]
        if len(self.names) >= self.expect:
            self.hello.set()

    def on_pong(self, environment, msg) -> None:
        t3 = time.time()
        waiter = self.pongs.get(msg.node_id)
        if waiter is not None:
            waiter.set((msg.data["t0"], msg.data["t1"], msg.data["t2"], t3))

    def on_rows(self, environment, msg) -> None:
        if msg.data.get("id") != self.level_id:
            return
        off = self.offsets.get(msg.node_id, 0.0)
        rows = []
        for seq, intended, sent, received, outcome, http_status, error, body, nbytes, headers in msg.data["rows"]:
            rows.append(
                [
                    seq,
                    intended - off,
                    sent - off,
                    received - off,
                    outcome,
                    http_status,
                    error,
                    base64.b64encode(body).decode("ascii") if body else "",
                    nbytes,
                    headers,
                ]
            )
        self.emit(ev="rows", id=self.level_id, client=self.names.get(msg.node_id, msg.node_id), rows=rows)

    def on_done(self, environment, msg) -> None:
        if msg.data.get("id") != self.level_id:
            return
        self.done[msg.node_id] = msg.data
        if len(self.done) >= len(self.clients()):
            self.all_done.set()

    def clients(self) -> list[str]:
        """Client ids of the named workers, by name (the order the schedule is shared in)."""
        return sorted(self.names, key=lambda c: self.names[c])

    def sync_clock(self, client: str) -> dict:
        import gevent.event

        best = None
        for _ in range(self.clock_samples):
            waiter = gevent.event.AsyncResult()
            self.pongs[client] = waiter
            self.runner.send_message("pd_ping", {"t0": time.time()}, client_id=client)
            try:
                t0, t1, t2, t3 = waiter.get(timeout=5.0)
            except Exception:  # noqa: BLE001 - gevent.Timeout: the sample is lost
                continue
            delay = (t3 - t0) - (t2 - t1)
            offset = ((t1 - t0) + (t2 - t3)) / 2.0
            if best is None or delay < best[0]:
                best = (delay, offset)
        self.pongs.pop(client, None)
        if best is None:
            return {"offset_ms": None, "rtt_ms": None, "samples": 0}
        self.offsets[client] = best[1]
        return {"offset_ms": best[1] * 1000.0, "rtt_ms": best[0] * 1000.0, "samples": self.clock_samples}

    def level(self, cmd: dict, stop_flag) -> None:
        import gevent

        clients = self.clients()
        self.level_id = cmd["id"]
        self.done = {}
        self.all_done.clear()
        clock = {self.names[c]: self.sync_clock(c) for c in clients}
        self.emit(ev="clock", id=cmd["id"], clients=clock)
        bodies = [(r["headers"], base64.b64decode(r["body"])) for r in cmd["requests"]]
        start = time.time() + float(cmd.get("lead_s", 0.5))
        shares = _shares(cmd, len(clients))
        for client, share in zip(clients, shares):
            share.update(
                id=cmd["id"],
                start=start + self.offsets.get(client, 0.0),
                url=cmd["url"],
                method=cmd["method"],
                requests=bodies,
                verify_tls=cmd.get("verify_tls", True),
                timeout_s=cmd["timeout_s"],
                batch_ms=cmd.get("batch_ms", 50.0),
            )
            self.runner.send_message("pd_level", share, client_id=client)
        if cmd.get("mode") == "closed":
            last = start + float(cmd.get("duration_s") or 0.0)
        else:
            last = (cmd["offsets"][-1] if cmd["offsets"] else 0.0) + start
        deadline = last + float(cmd["timeout_s"]) + 30.0
        stopped = False
        lost: list[str] = []
        while not self.all_done.wait(0.2):
            if stop_flag.get("stop") and not stopped:
                stopped = True
                deadline = min(deadline, time.time() + float(cmd["timeout_s"]) + 30.0)
                for client in clients:
                    self.runner.send_message("pd_stop", {"id": cmd["id"]}, client_id=client)
            gone = [c for c in clients if c not in self.done and self._missing(c)]
            if gone or time.time() > deadline:
                lost = [self.names[c] for c in clients if c not in self.done]
                break
            gevent.sleep(0)
        self.emit(
            ev="done",
            id=cmd["id"],
            clients={self.names[c]: self.done.get(c, {}) for c in clients},
            lost=lost,
            start=start,
        )
        self.level_id = None

    def _missing(self, client: str) -> bool:
        node = self.runner.clients.get(client)
        return node is None or node.state == "missing"


def _shares(cmd: dict, n: int) -> list[dict]:
    """Each worker's share of a level. Open loop: the schedule round robin (sequence numbers and offsets). Closed
    loop: the clients as evenly as they go, and a request count in proportion (contiguous sequence numbers), or the
    duration (sequence numbers interleaved: worker k's j-th request is ``k + n * j``)."""
    if cmd.get("mode") != "closed":
        offsets = cmd["offsets"]
        out = []
        for k in range(n):
            seqs = list(range(k, len(offsets), n))
            out.append(
                {
                    "mode": "open",
                    "seqs": seqs,
                    "offsets": [offsets[i] for i in seqs],
                    "max_in_flight": cmd["max_in_flight"],
                }
            )
        return out
    total = int(cmd["concurrency"])
    clients = [total // n + (1 if k < total % n else 0) for k in range(n)]
    count = cmd.get("count")
    out = []
    first = 0
    for k, c in enumerate(clients):
        share = {"mode": "closed", "clients": c, "duration_s": cmd.get("duration_s"), "max_in_flight": max(1, c)}
        if count is not None:
            mine = (int(count) * sum(clients[: k + 1])) // total - (int(count) * sum(clients[:k])) // total
            share.update(count=mine, seq0=first, stride=1)
            first += mine
        else:
            share.update(count=None, seq0=k, stride=n)
        out.append(share)
    return out


def run_master(args) -> int:
    import gevent
    from locust.env import Environment

    env = Environment(user_classes=[_idle_user()])
    runner = env.create_master_runner(master_bind_host=args.bind, master_bind_port=args.port)
    master = Master(runner, args.expect, args.clock_samples)
    master.emit(ev="listening", port=runner.server.port)
    if not master.hello.wait(args.start_timeout_s):
        master.emit(
            ev="error",
            message=f"{len(master.names)} of {args.expect} workers connected within {args.start_timeout_s:g} s",
        )
        runner.quit()
        return 3
    master.emit(ev="ready", clients=[master.names[c] for c in master.clients()])
    stop_flag: dict = {}
    current = None
    try:
        for line in _stdin_lines(gevent.get_hub()):
            if line is None:
                break
            cmd = json.loads(line)
            op = cmd.get("op")
            if op == "level":
                stop_flag.clear()
                current = gevent.spawn(master.level, cmd, stop_flag)
            elif op == "stop":
                stop_flag["stop"] = True
            elif op == "quit":
                break
    finally:
        stop_flag["stop"] = True
        if current is not None:
            current.join(timeout=10)
        for client in master.clients():
            runner.send_message("pd_stop", {"id": master.level_id}, client_id=client)
        runner.quit()
        master.emit(ev="bye")
    return 0


# -- a worker -----------------------------------------------------------------------------------------------------
class Worker:
    def __init__(self, runner, name: str):
        self.runner = runner
        self.name = name
        self.stops: dict = {}
        runner.register_message("pd_ping", self.on_ping)
        runner.register_message("pd_level", self.on_level, concurrent=True)
        runner.register_message("pd_stop", self.on_stop)

    def on_ping(self, environment, msg) -> None:
        t1 = time.time()
        self.runner.send_message("pd_pong", {"t0": msg.data["t0"], "t1": t1, "t2": time.time()})

    def on_stop(self, environment, msg) -> None:
        ev = self.stops.get(msg.data.get("id"))
        if ev is not None:
            ev.set()
        elif msg.data.get("id") is None:
            for ev in self.stops.values():
                ev.set()

    def on_level(self, environment, msg) -> None:
        import gevent
        import gevent.event
        import gevent.pool
        import urllib3

        d = msg.data
        level_id = d["id"]
        stop = self.stops[level_id] = gevent.event.Event()
        timeout = float(d["timeout_s"])
        pool = gevent.pool.Pool(int(d["max_in_flight"]))
        http = urllib3.PoolManager(
            num_pools=4,
            maxsize=int(d["max_in_flight"]),
            block=False,
            retries=False,
            cert_reqs="CERT_REQUIRED" if d.get("verify_tls", True) else "CERT_NONE",
        )
        url, method, requests = d["url"], d["method"], d["requests"]
        rows: list = []

        def one(seq: int, intended: float) -> None:
            headers, body = requests[seq % len(requests)]
            t0 = time.time()
            try:
                resp = http.request(
                    method,
                    url,
                    body=body,
                    headers=headers,
                    timeout=urllib3.Timeout(connect=min(10.0, timeout), read=timeout),
                    retries=False,
                    preload_content=True,
                )
                t1 = time.time()
                data = resp.data or b""
                head = dict(resp.headers)
                rows.append([seq, intended, t0, t1, HTTP, resp.status, "", data[:MAX_BODY], len(data), head])
            except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ConnectTimeoutError) as exc:
                rows.append([seq, intended, t0, time.time(), TIMEOUT, None, f"timed out: {exc}", b"", 0, {}])
            except Exception as exc:  # noqa: BLE001 - any failure of one request is that request's row
                reason = getattr(exc, "reason", None) or exc
                rows.append([seq, intended, t0, time.time(), ERROR, None, f"connection: {reason}", b"", 0, {}])

        def flush() -> None:
            if rows:
                batch = rows[:]
                del rows[: len(batch)]
                self.runner.send_message("pd_rows", {"id": level_id, "rows": batch})

        def flusher() -> None:
            while True:
                gevent.sleep(float(d["batch_ms"]) / 1000.0)
                flush()

        pump = gevent.spawn(flusher)
        sent = 0
        start = float(d["start"])
        try:
            if d["mode"] == "closed":
                sent = self._closed_loop(d, start, stop, one)
                return
            for seq, off in zip(d["seqs"], d["offsets"]):
                intended = start + float(off)
                while not stop.is_set():
                    remaining = intended - time.time()
                    if remaining <= 0:
                        break
                    if remaining > 0.002:
                        stop.wait(min(remaining - 0.0015, 0.1))
                    else:
                        gevent.sleep(0)
                if stop.is_set():
                    break
                pool.spawn(one, seq, intended)  # blocks while every slot is busy: that send is late
                sent += 1
            pool.join(timeout=timeout + 5.0)
        finally:
            pump.kill()
            flush()
            http.clear()
            scheduled = len(d["seqs"]) if d["mode"] == "open" else d.get("count")
            self.runner.send_message(
                "pd_done",
                {"id": level_id, "scheduled": scheduled, "sent": sent, "stopped": stop.is_set()},
            )
            self.stops.pop(level_id, None)

    @staticmethod
    def _closed_loop(d: dict, start: float, stop, one) -> int:
        """``clients`` greenlets send back to back from ``start`` until ``duration_s`` passed or ``count`` went."""
        import gevent

        count, duration = d.get("count"), d.get("duration_s")
        end = start + float(duration) if duration else None
        issued = [0]

        def client() -> None:
            while not stop.is_set():
                j = issued[0]
                if count is not None and j >= count:
                    return
                now = time.time()
                if end is not None and now >= end:
                    return
                issued[0] += 1
                one(d["seq0"] + j * d["stride"], now)

        while not stop.is_set() and time.time() < start:
            stop.wait(max(0.0, min(0.1, start - time.time())))
        greenlets = [gevent.spawn(client) for _ in range(int(d["clients"]))]
        gevent.joinall(greenlets)
        return issued[0]


def run_worker(args) -> int:
    import gevent
    from locust.env import Environment

    env = Environment(user_classes=[_idle_user()])
    runner = env.create_worker_runner(master_host=args.master_host, master_port=args.master_port)
    Worker(runner, args.name)
    runner.send_message("pd_hello", {"name": args.name, "pid": os.getpid()})

    def watch_stdin() -> None:
        for line in _stdin_lines(gevent.get_hub()):
            if line is None:
                break
        runner.quit()

    if args.watch_stdin:
        gevent.spawn(watch_stdin)
    runner.greenlet.join()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="role", required=True)
    m = sub.add_parser("master", help="the master: JSON lines commands on stdin, events on stdout")
    m.add_argument("--bind", default="127.0.0.1", help="interface the workers connect to ('*': all)")
    m.add_argument("--port", type=int, default=0, help="port (0: a free one, printed in the listening event)")
    m.add_argument("--expect", type=int, required=True, help="workers to wait for")
    m.add_argument("--start-timeout-s", type=float, default=60.0)
    m.add_argument("--clock-samples", type=int, default=8)
    w = sub.add_parser("worker", help="a worker")
    w.add_argument("--master-host", required=True)
    w.add_argument("--master-port", type=int, required=True)
    w.add_argument("--name", required=True, help="the client name in requests.csv")
    w.add_argument("--no-watch-stdin", dest="watch_stdin", action="store_false", help="keep running at end of stdin")
    args = p.parse_args(argv)
    return run_master(args) if args.role == "master" else run_worker(args)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # not sys.exit: the thread reading standard input would still hold its lock at interpreter shutdown
    os._exit(code)
