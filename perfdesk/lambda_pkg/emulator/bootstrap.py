"""The Python runtime's bootstrap, as Lambda's managed runtime has it at ``/var/runtime/bootstrap.py``.

Copied into each prepared runtime (see :mod:`runtimes`) and run there by the runtime's own interpreter as
``/var/lang/bin/python3.X /var/runtime/bootstrap.py``; it imports nothing but the standard library and the
runtime interface client. It puts the module search path in Lambda's order (the task root first, then the layers'
``/opt/python/lib/python3.X/site-packages`` and ``/opt/python``, then the runtime's own folders), reads ``.pth``
files in the task root, and hands over to the runtime interface client with the handler from ``_HANDLER``.
"""

import os
import site
import sys


def main() -> None:
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    sys.path[0:0] = [task_root, f"/opt/python/lib/python{version}/site-packages", "/opt/python"]
    site.addsitedir(task_root)
    from awslambdaric import __main__ as awslambdaric_main

    awslambdaric_main.main([sys.argv[0], os.environ["_HANDLER"]])


if __name__ == "__main__":
    main()
