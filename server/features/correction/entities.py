"""The entity types redaction knows, by the names their placeholders show, and the Presidio names behind them.

Kept apart from the engine so that settings and routes can check a list of types without loading Presidio."""

from __future__ import annotations

from collections.abc import Iterable

ENTITY_TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "ACCOUNT", "IP_ADDRESS", "PERSON")
PLACEHOLDERS = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD",
                "ACCOUNT": "ACCOUNT", "IBAN_CODE": "ACCOUNT", "IP_ADDRESS": "IP_ADDRESS", "PERSON": "PERSON"}
"""Presidio's entity name -> the type a placeholder shows (``[EMAIL]``)."""


def entity_types(raw: str) -> tuple[str, ...]:
    """``VOXLANE_REDACTION_ENTITIES``: comma- or space-separated placeholder types (``EMAIL,PHONE``)."""
    return checked(s.upper() for s in raw.replace(",", " ").split())


def checked(types: Iterable[str]) -> tuple[str, ...]:
    """The types once each, in order; ``ValueError`` naming the first unknown one."""
    items = tuple(dict.fromkeys(types))
    unknown = [s for s in items if s not in ENTITY_TYPES]
    if unknown:
        raise ValueError(f"unknown entity type {unknown[0]!r}; expected some of {', '.join(ENTITY_TYPES)}")
    return items


def presidio_entities(types: tuple[str, ...] | list[str]) -> list[str]:
    """The Presidio entity names behind placeholder types (``ACCOUNT`` -> ``ACCOUNT``, ``IBAN_CODE``)."""
    return [name for name, shown in PLACEHOLDERS.items() if shown in types]
