"""The serverless paradigm: the function handler, package builders, boto3 management, the local emulator."""
