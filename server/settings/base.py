"""What every settings group shares: the one way a field declares its ``VOXLANE_*`` name, help and bounds, the
error a bad value raises, and the conversion and range check applied to every field alike."""

from __future__ import annotations

from dataclasses import Field
from typing import Any

__all__ = ["SettingsError", "check_field", "convert_field", "setting"]


class SettingsError(ValueError):
    pass


def setting(env: str, help: str, choices: tuple[str, ...] | None = None, lo: float | None = None,
            hi: float | None = None, secret: bool = False) -> dict[str, Any]:
    """A setting's metadata: its environment name, help, and the bounds it is checked against."""
    return {"env": env, "help": help, "choices": choices, "lo": lo, "hi": hi, "secret": secret}


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
