"""A handler that needs a package the function does not ship: importing it fails at init, as on Lambda."""

import importlib
import os

importlib.import_module(os.environ["IMPORT_NAME"])


def handler(event, context):
    return "imported"
