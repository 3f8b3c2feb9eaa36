"""What every settings group shares: the one way a field declares its default, help and bounds, the
``VOXLANE_*`` name derived from the field's own (so a flag and its variable cannot drift apart), the error a bad
value raises, and the conversion and checks applied to every field alike."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import Field, dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar, dataclass_transform

__all__ = ["SettingsError", "check_field", "check_http_url", "convert_field", "reported_as", "setting",
           "settings_group"]

T = TypeVar("T")


class SettingsError(ValueError):
    pass


def setting(default: T, help: str, choices: tuple[str, ...] | None = None, lo: float | None = None,
            hi: float | None = None, secret: bool = False) -> T:
    """A settings field: its default, its help, and the bounds it is checked against; :func:`settings_group`
    adds its environment name."""
    return field(default=default, metadata={"help": help, "choices": choices, "lo": lo, "hi": hi, "secret": secret})


@dataclass_transform()
def settings_group(cls: type[T]) -> type[T]:
    """``@dataclass``, with each field's environment name, ``VOXLANE_`` and its own upper-cased, in its ``env``
    metadata."""
    for name, value in vars(cls).items():
        if isinstance(value, Field):
            value.metadata = MappingProxyType({"env": f"VOXLANE_{name.upper()}", **value.metadata})
    return dataclass(cls)


def convert_field(f: Field[Any], raw: Any, source: str) -> Any:
    """A flag's or variable's raw value as the field's type; ``source`` names it in the error."""
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{source}={raw!r}: expected a number ({kind.split(' ')[0]})") from None
    if isinstance(raw, str):
        raw = raw.strip()
        if raw == "" and "None" in kind:
            return None
    return raw


def check_field(f: Field[Any], value: Any, name: str) -> None:
    """Raises ``SettingsError`` when ``value`` is not one of the field's choices or lies outside its bounds."""
    m = f.metadata
    if value is None:
        return
    if m["choices"] and value not in m["choices"]:
        raise SettingsError(f"{name}={value!r}: expected one of {', '.join(m['choices'])}")
    if m["lo"] is not None and value < m["lo"] or m["hi"] is not None and value > m["hi"]:
        raise SettingsError(f"{name}={value!r}: must be between {m['lo']:g} and {m['hi']:g}")


def check_http_url(name: str, value: str | None) -> None:
    """Raises ``SettingsError`` when ``value`` is set but is not an http(s) URL."""
    if value and not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must start with http:// or https://")


@contextmanager
def reported_as(name: str) -> Iterator[None]:
    """A ``ValueError`` raised inside becomes a ``SettingsError`` whose message starts with the setting's name."""
    try:
        yield
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None
