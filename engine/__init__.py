"""The inference engine: wire protocol, config schema, backends, server and subscriber client.

It is the base package: the streamer and trainer import its protocol and config schema, and a
host that only serves an engine must not need torch, so nothing here imports torch at module
level.
"""
