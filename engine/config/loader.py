"""Load YAML configs into pydantic models, with errors that point at `file:line`.

Why by hand and not pydantic-settings: a config error must name the YAML line it came from,
which needs the YAML node tree (`yaml.compose`) next to the validated data; the settings
library discards positions. Environment overrides are a small, explicit layer on top.

Hostile or broken files are one-line errors, never a traceback or an exhausted machine: at most
MAX_CONFIG_BYTES of UTF-8, at most MAX_DEPTH levels of nesting, and at most MAX_NODES values
once aliases are expanded (a 377-byte "billion laughs" file used to take 50 s and 3.5 GB).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

ENV_PREFIX = "MFVAN_"
ENV_NESTING = "__"
MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 100_000


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
    data, lines = _parse(text, source)
    return _Located(data if data is not None else {}, lines)


def _parse(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse YAML and remember the 1-based line of every key path.

    One pass over the node graph before anything is constructed: it finds the lines, and it
    refuses a document nested deeper than MAX_DEPTH or whose aliases expand to more than
    MAX_NODES values, before PyYAML or pydantic would expand them.
    """
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ConfigError([f"{source}:1: <yaml>: nested too deeply (at most {MAX_DEPTH} levels)"]) from None
        lines: dict[tuple[str, ...], int] = {}
        stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(node, ())] if node is not None else []
        visited = 0
        while stack:
            n, path = stack.pop()
            visited += 1
            line = n.start_mark.line + 1
            if visited > MAX_NODES:
                raise ConfigError([f"{source}:{line}: <yaml>: more than {MAX_NODES} values once aliases are "
                                   "expanded (a YAML bomb?)"])
            if len(path) > MAX_DEPTH:
                raise ConfigError([f"{source}:{line}: <yaml>: nested too deeply (at most {MAX_DEPTH} levels)"])
            lines.setdefault(path, line)
            if isinstance(n, yaml.MappingNode):
                for key_node, value_node in n.value:
                    key = (*path, str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "<key>")
                    lines[key] = key_node.start_mark.line + 1
                    stack.append((value_node, key))
            elif isinstance(n, yaml.SequenceNode):
                stack.extend((item, (*path, str(i))) for i, item in enumerate(n.value))
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{source}:{line}: <yaml>: {problem}"]) from None
    except RecursionError:
        raise ConfigError([f"{source}:1: <yaml>: nested too deeply (at most {MAX_DEPTH} levels)"]) from None
    finally:
        loader.dispose()
    return data, lines


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The config section behind a field's annotation (also inside `X | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _is_setting(model: type[BaseModel] | None, parts: list[str]) -> bool:
    """Does `parts` (an env name split at `__`) name a field of `model`?

    Why: MFVAN_* variables meant for something else (the README's MFVAN_CACHE, a setting of
    another command such as MFVAN_PUB_ENDPOINT seen by mfvan-sub) made every command exit 2
    with "unknown key". Only a name that is a setting of this command overrides anything.
    """
    if model is None:
        return True  # no schema given: keep everything (validation will judge)
    cursor: type[BaseModel] | None = model
    for i, part in enumerate(parts):
        if cursor is None or part not in cursor.model_fields:
            return False
        cursor = _model_of(cursor.model_fields[part].annotation)
        if cursor is None and i < len(parts) - 1:
            return False  # a leaf (or a list) cannot be entered
    return True


def _env_overrides(
    environ: Mapping[str, str], prefix: str, model: type[BaseModel] | None = None
) -> dict[str, Any]:
    """`MFVAN_ENGINE__PUB_ENDPOINT=tcp://*:5556` → {"engine": {"pub_endpoint": "tcp://*:5556"}}.

    Values are parsed as YAML scalars so numbers and booleans keep their types. Names that
    are not settings of `model` are ignored (see `_is_setting`).
    """
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(prefix) or name == prefix:
            continue
        parts = [p.lower() for p in name[len(prefix):].split(ENV_NESTING) if p]
        if not parts or not _is_setting(model, parts):
            continue
        try:
            value = _parse(raw, f"<env {name}>")[0] if raw.strip() else raw
        except ConfigError as exc:
            if "<yaml>: nested" in str(exc) or "YAML bomb" in str(exc):
                raise
            value = raw  # not YAML: the plain string
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
            with p.open("rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError([f"{source}:0: <file>: cannot read: {exc.strerror or exc}"]) from None
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError([f"{source}:0: <file>: larger than {MAX_CONFIG_BYTES} bytes; not a config file?"])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError([f"{source}:{line}: <file>: not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                               f"at offset {exc.start}); save the file as UTF-8"]) from None
        located = _compose_with_lines(text, source)
        if not isinstance(located.data, dict):
            raise ConfigError([f"{source}:1: <root>: expected a mapping of keys, got {type(located.data).__name__}"])
    env = _env_overrides(os.environ if environ is None else environ, env_prefix, model)
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
