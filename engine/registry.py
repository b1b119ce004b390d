"""Named plugins, found through one entry-point group and imported only when chosen.

Why entry points: a name is known from the installed package's metadata without importing
its module, so listing the choices (argparse, error messages, `--print-config`) imports no
runtime, and a plugin that lives in a higher layer (the torch backend in `trainer`) or in
another package is reached without the lower layer importing it. Adding a plugin is its
module plus one line under `[project.entry-points."<group>"]` in that package's
pyproject.toml. Tests (and embedders) add one at run time with `Registry.register`.

Each plugin class may carry `config`: a `PluginSection` subclass holding its own options.
A config field built with `Registry.field()` is the union of every registered section,
discriminated by `type`; it is resolved when a value is validated (not when the schema is
built), so a plugin registered later validates too, and only the chosen plugin's module is
imported. A bare string is that plugin with its defaults (`backend: onnxruntime` means
`backend: {type: onnxruntime}`), and errors keep the YAML path of the key they are about
(`engine.backend.threads`), which the config loader turns into `file:line`.

Shared fields: a layer may keep options that mean the same for every plugin on its own
section (`engine.intra_op_threads`, `faces.detect_width`). A plugin field left unset
(`None`) takes the shared value of the same name (`PluginSection.resolved`); set, it
overrides it for that plugin only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from functools import cached_property
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError, core_schema

from engine.config.base import Section

T = TypeVar("T")
S = TypeVar("S", bound="PluginSection")


class UnknownPlugin(ValueError):
    """A name no plugin is registered under; the message lists the registered ones."""


class PluginSection(Section):
    """The config section of one plugin: `type` is its registered name, the rest its options."""

    type: str = Field(description="which plugin (its registered name)")

    def options(self) -> dict[str, Any]:
        """The plugin's own options (every field but `type`), e.g. as constructor arguments."""
        return {k: getattr(self, k) for k in type(self).model_fields if k != "type"}

    def resolved(self: S, **shared: Any) -> S:
        """This section with each unset (None) option that `shared` names filled from it."""
        fill = {k: v for k, v in shared.items() if k in type(self).model_fields and k != "type" and getattr(self, k) is None}
        return self.model_copy(update=fill) if fill else self


class Registry(Generic[T]):
    """Name → plugin class for one kind of plugin (`kind` appears in messages: "backend").

    `builtin` names sections the layer itself interprets (the backend "auto"), listed first.
    `unavailable` is the layer's exception for a plugin whose module cannot be imported.
    """

    def __init__(
        self,
        kind: str,
        group: str,
        *,
        builtin: Mapping[str, type[PluginSection]] | None = None,
        unavailable: type[Exception] = RuntimeError,
    ):
        self.kind = kind
        self.group = group
        self.builtin = dict(builtin or {})
        self.unavailable = unavailable
        self._added: dict[str, str | type[T]] = {}

    @cached_property
    def _entry_points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def plugins(self) -> list[str]:
        """Registered plugin names, sorted; nothing is imported."""
        return sorted({*self._entry_points, *self._added})

    def names(self) -> list[str]:
        """Every name a config or flag may give: the builtin ones first, then the plugins."""
        return [*self.builtin, *(n for n in self.plugins() if n not in self.builtin)]

    def register(self, name: str, target: str | type[T]) -> None:
        """Add (or replace) a plugin at run time: a class, or "module:attribute" imported when chosen."""
        self._added[name] = target

    def unregister(self, name: str) -> None:
        self._added.pop(name, None)

    def unknown(self, name: object, allowed: list[str] | None = None) -> str:
        """The one-line error for a name that is not among `allowed` (default: every name)."""
        known = ", ".join(self.names() if allowed is None else allowed)
        return f"unknown {self.kind} {name!r}; choose from {known or 'none is registered: is mfvan installed (pip install -e .)?'}"

    def load(self, name: str) -> type[T]:
        """The class registered as `name`, imported now (its runtime may still import lazily)."""
        target: Any = self._added.get(name) or self._entry_points.get(name)
        if target is None:
            raise UnknownPlugin(self.unknown(name))
        try:
            if isinstance(target, EntryPoint):
                return target.load()
            if isinstance(target, str):
                module, _, attr = target.partition(":")
                obj: Any = importlib.import_module(module)
                for part in attr.split(".") if attr else ():
                    obj = getattr(obj, part)
                return obj
            return target
        except ModuleNotFoundError as exc:
            raise self.unavailable(f"the {name} {self.kind} needs {exc.name!r}, which is not installed") from None

    def section(self, name: str) -> type[PluginSection]:
        """The config section class of `name` (a plugin without options gets the bare one)."""
        if name in self.builtin:
            return self.builtin[name]
        return getattr(self.load(name), "config", None) or PluginSection

    def make(self, name: str, **options: Any) -> PluginSection:
        """A validated section for `name` (no options: that plugin's defaults).

        Raises UnknownPlugin, the registry's `unavailable` error, or pydantic's ValidationError.
        """
        if name not in self.names():
            raise UnknownPlugin(self.unknown(name))
        return self.section(name).model_validate({**options, "type": name})

    def validate(self, value: Any) -> PluginSection:
        """A name, a mapping with `type`, or a section → the chosen plugin's validated section.

        Raises pydantic's ValidationError only.
        """
        return self._adapter.validate_python(value)

    @cached_property
    def _adapter(self) -> TypeAdapter[PluginSection]:
        return TypeAdapter(Annotated[PluginSection, self.field()])

    def _validate(self, value: Any) -> PluginSection:
        """The field validator: raises pydantic errors (never others), so a config field reports
        them at its own path."""
        if isinstance(value, PluginSection):
            if type(value) is self._section_or_error(value.type):
                return value
            value = value.model_dump()
        if isinstance(value, str):
            return self._section_or_error(value).model_validate({"type": value})
        if not isinstance(value, Mapping):
            raise PydanticCustomError(
                "plugin_type", "expected a {kind} name or a mapping with `type`", {"kind": self.kind}
            )
        name = value.get("type")
        if name is None:
            raise ValidationError.from_exception_data(
                self.kind, [{"type": "missing", "loc": ("type",), "input": dict(value)}]
            )
        return self._section_or_error(name, loc=("type",)).model_validate(dict(value))

    def _section_or_error(self, name: Any, loc: tuple[str, ...] = ()) -> type[PluginSection]:
        if not isinstance(name, str) or name not in self.names():
            err = PydanticCustomError("unknown_plugin", "{message}", {"message": self.unknown(name)})
            if not loc:
                raise err
            raise ValidationError.from_exception_data(self.kind, [{"type": err, "loc": loc, "input": name}])
        try:
            return self.section(name)
        except (UnknownPlugin, ImportError, self.unavailable) as exc:
            raise PydanticCustomError("plugin_unavailable", "{message}", {"message": str(exc)}) from None

    def field(self) -> _PluginField:
        """Annotated[PluginSection, registry.field()]: a config field holding one plugin's section."""
        return _PluginField(self)

    def name_type(self, *, builtin: bool = False) -> Any:
        """A `str` type that accepts the registered names (and the builtin ones when asked)."""

        def check(name: str) -> str:
            allowed = self.names() if builtin else self.plugins()
            if name not in allowed:
                raise PydanticCustomError("unknown_plugin", "{message}", {"message": self.unknown(name, allowed)})
            return name

        return Annotated[str, AfterValidator(check), WithJsonSchema({"type": "string", "description": f"a {self.kind} name"})]


class _PluginField:
    """Pydantic hook for `Registry.field()`: validate by the registry, dump the chosen section."""

    def __init__(self, registry: Registry[Any]):
        self.registry = registry

    def __get_pydantic_core_schema__(self, _source: Any, _handler: Callable[[Any], Any]) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            self.registry._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda section, info: section.model_dump(mode=info.mode), info_arg=True
            ),
        )

    def __get_pydantic_json_schema__(self, _schema: Any, _handler: Any) -> dict[str, Any]:
        """The discriminated union as JSON Schema: a bare name, or any registered section."""
        variants: list[dict[str, Any]] = [{"type": "string", "enum": self.registry.names()}]
        for name in self.registry.names():
            try:
                schema = self.registry.section(name).model_json_schema()
            except Exception:  # noqa: BLE001 - a broken plugin still appears by name
                continue
            schema.setdefault("properties", {})["type"] = {"const": name}
            variants.append(schema)
        return {"oneOf": variants, "description": f"a {self.registry.kind}: its name, or {{type: name, options...}}"}

