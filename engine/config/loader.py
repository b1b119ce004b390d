"""Load YAML configs into pydantic models, with errors that point at `file:line`.

Why by hand and not pydantic-settings: a config error must name the YAML line it came from,
which needs the YAML node tree (`yaml.compose`) next to the validated data; the settings
library discards positions. Environment overrides are a small, explicit layer on top.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

ENV_PREFIX = "MFVAN_"
ENV_NESTING = "__"


class ConfigError(Exception):
    """One or more config problems, each already formatted as `file:line: key.path: message`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class _Located:
    data: Any
    lines: dict[tuple[str, ...], int]


def _compose_with_lines(text: str, source: str) -> _Located:
    """Parse YAML and remember the 1-based line of every key path."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{source}:{line}: <yaml>: {problem}"]) from None
    lines: dict[tuple[str, ...], int] = {}

    def walk(n: yaml.Node | None, path: tuple[str, ...]) -> None:
        if n is None:
            return
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key = (*path, str(key_node.value))
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, str(i)))

    walk(node, ())
    return _Located(data if data is not None else {}, lines)


def _env_overrides(environ: Mapping[str, str], prefix: str) -> dict[str, Any]:
    """`MFVAN_ENGINE__PUB_ENDPOINT=tcp://*:5556` → {"engine": {"pub_endpoint": "tcp://*:5556"}}.

    Values are parsed as YAML scalars so numbers and booleans keep their types.
    """
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(prefix) or name == prefix:
            continue
        parts = [p.lower() for p in name[len(prefix):].split(ENV_NESTING) if p]
        if not parts:
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        cursor = out
        for part in parts[:-1]:
            nxt = cursor.setdefault(part, {})
            if not isinstance(nxt, dict):
                break
            cursor = nxt
        else:
            cursor[parts[-1]] = value
    return out


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for k, v in over.items():
            merged[k] = _merge(base.get(k), v) if k in base else v
        return merged
    return over


def _format_errors(
    exc: ValidationError, source: str, lines: dict[tuple[str, ...], int], env_keys: set[tuple[str, ...]]
) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        dotted = ".".join(loc) or "<root>"
        if loc[:1] and any(loc[: len(k)] == k for k in env_keys):
            where = f"<env {ENV_PREFIX}{ENV_NESTING.join(loc).upper()}>"
        else:
            # the deepest known ancestor gives the line (a missing key reports its parent's)
            line = None
            for cut in range(len(loc), -1, -1):
                line = lines.get(loc[:cut])
                if line is not None:
                    break
            where = f"{source}:{line or 1}"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (misspelt? see --print-config for the valid keys)"
        problems.append(f"{where}: {dotted}: {msg}")
    return problems


def load_config(
    model: type[M],
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    env_prefix: str = ENV_PREFIX,
    overrides: Mapping[str, Any] | None = None,
) -> M:
    """Validate `path` (or the model's defaults when None) plus environment overrides.

    `overrides` are applied last (command-line flags). Raises ConfigError with every problem.
    """
    source = "<defaults>"
    located = _Located({}, {})
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"{source}:0: <file>: cannot read: {exc.strerror or exc}"]) from None
        located = _compose_with_lines(text, source)
        if not isinstance(located.data, dict):
            raise ConfigError([f"{source}:1: <root>: expected a mapping of keys, got {type(located.data).__name__}"])
    env = _env_overrides(os.environ if environ is None else environ, env_prefix)
    data = _merge(located.data, env)
    if overrides:
        data = _merge(data, dict(overrides))

    def keys(d: Any, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
        if not isinstance(d, dict):
            return {path}
        out: set[tuple[str, ...]] = set()
        for k, v in d.items():
            out |= keys(v, (*path, k))
        return out

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, located.lines, keys(env) if env else set())) from None


def dump_config(cfg: BaseModel) -> str:
    """The effective config as YAML (what --print-config shows), loadable back as a file."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def report_and_exit(err: ConfigError) -> None:
    """Config errors are the user's to fix: print them plainly, no traceback, exit code 2."""
    for problem in err.problems:
        print(problem, file=sys.stderr)
    raise SystemExit(2)
