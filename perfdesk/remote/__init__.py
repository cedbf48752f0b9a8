"""The server paradigm: the inference agent, transports (local, SSH), provisioning, EC2."""
