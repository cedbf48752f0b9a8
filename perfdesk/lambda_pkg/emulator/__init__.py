"""perfdesk's local Lambda emulator: Lambda's HTTP API for boto3, execution environments under awslambdaric."""

from perfdesk.lambda_pkg.emulator.server import Emulator

__all__ = ["Emulator"]
