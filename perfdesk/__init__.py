"""perfdesk: measure DNN inference on servers against serverless functions."""

__version__ = "0.1.0"
