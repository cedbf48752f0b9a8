"""The Python runtime's bootstrap, as Lambda's managed runtime has it at ``/var/runtime/bootstrap.py``.

Copied into each prepared runtime (see :mod:`runtimes`) and run there by the runtime's own interpreter as
``/var/lang/bin/python3.X /var/runtime/bootstrap.py``; it imports nothing but the standard library and the
runtime interface client. It puts the module search path in Lambda's order (the task root first, then the layers'
``/opt/python/lib/python3.X/site-packages`` and ``/opt/python``, then the runtime's own folders), reads ``.pth``
files in the task root, and hands over to the runtime interface client with the handler from ``_HANDLER``.

With ``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`` (a SnapStart version being published) it stands in for the
snapshot: after the init and the before-snapshot hooks, the runtime interface client asks ``restore/next``; the
emulator answers it each time it restores the version, naming the new environment's Runtime API and log socket,
and this process (the snapshot) forks. The child is the restored environment: its output goes to the log socket,
it talks to its own Runtime API (where ``restore/next`` answers at once), runs the after-restore hooks and serves
invocations; the snapshot waits for the next restore and reports each child's exit (:mod:`snapstart`).
"""

import os
import site
import sys


def main() -> None:
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    sys.path[0:0] = [task_root, f"/opt/python/lib/python{version}/site-packages", "/opt/python"]
    site.addsitedir(task_root)
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
        _snapshot_by_fork()
    from awslambdaric import __main__ as awslambdaric_main

    awslambdaric_main.main([sys.argv[0], os.environ["_HANDLER"]])


_RESTORE = "/2018-06-01/runtime/restore/"


def _snapshot_by_fork() -> None:
    """Make the runtime interface client's ``restore_next`` fork a restored environment per restore (see above)."""
    import http.client
    import socket
    import threading
    import time

    from awslambdaric import lambda_runtime_client as lrc

    def call(address, method, what, body=b""):
        conn = http.client.HTTPConnection(address)
        conn.request(method, _RESTORE + what, body)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if resp.status not in (200, 202):
            raise lrc.LambdaRuntimeClientError(_RESTORE + what, resp.status, data)
        return resp

    def reap(address):
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.05)
                continue
            code = os.waitstatus_to_exitcode(status)
            try:
                call(address, "POST", "exited", f'{{"pid": {pid}, "code": {code}}}'.encode())
            except OSError:
                return

    def restore_next(self):
        reaper = None
        while True:
            resp = call(self.lambda_runtime_address, "GET", "next")
            clone, logs = resp.getheader("Perfdesk-Restore-Runtime-Api"), resp.getheader("Perfdesk-Restore-Log")
            if not clone:  # this environment is the restored one
                return
            pid = os.fork()
            if pid == 0:
                host, _, port = logs.rpartition(":")
                out = socket.create_connection((host, int(port)))
                os.dup2(out.fileno(), 1)
                os.dup2(out.fileno(), 2)
                out.close()
                # the runtime client's native part keeps the address it started with (the emulator tells the
                # clone's requests there apart by their socket); the Python part follows the new one
                os.environ["AWS_LAMBDA_RUNTIME_API"] = self.lambda_runtime_address = clone
                continue
            if reaper is None:
                reaper = threading.Thread(target=reap, args=(self.lambda_runtime_address,), daemon=True)
                reaper.start()
            call(self.lambda_runtime_address, "POST", "forked", f'{{"pid": {pid}, "api": "{clone}"}}'.encode())

    lrc.BaseLambdaRuntimeClient.restore_next = restore_next


if __name__ == "__main__":
    main()
