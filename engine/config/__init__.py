"""The config schema of every command (one module per command family) and its loader.

Each schema is a pydantic model with `extra="forbid"`, so a misspelt key is an error that
names its file and line rather than a silently ignored setting.
"""

from engine.config.loader import ConfigError, dump_config, load_config

__all__ = ["ConfigError", "dump_config", "load_config"]
