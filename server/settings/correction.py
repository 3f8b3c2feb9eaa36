"""The settings of the correction pass (PII redaction): whether finals are redacted, of which types, and whether
the text as spoken is kept for its owner."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.settings.base import SettingsError, setting

__all__ = ["REDACTION_ENTITIES", "CorrectionSettings", "check_correction"]

REDACTION_ENTITIES = "EMAIL,PHONE,CREDIT_CARD,ACCOUNT,IP_ADDRESS,PERSON"


@dataclass
class CorrectionSettings:
    disable_redaction: str = field(default="off", metadata=setting(
        "VOXLANE_DISABLE_REDACTION", "on: transcripts keep the personal data they say (e-mail addresses, phone,"
        " card and account numbers, IP addresses, names); off (the default): the correction pass replaces it by"
        " typed placeholders such as [EMAIL] before a final is stored or sent", ("on", "off")))
    redaction_entities: str = field(default=REDACTION_ENTITIES, metadata=setting(
        "VOXLANE_REDACTION_ENTITIES", "comma-separated types the redaction replaces, some of"
        f" {REDACTION_ENTITIES}"))
    keep_unredacted: str = field(default="off", metadata=setting(
        "VOXLANE_KEEP_UNREDACTED", "on: the text as spoken is stored beside the redacted one, readable only by"
        " the transcript's owner with the transcripts:unredacted scope (GET /v1/transcripts/{id}/unredacted);"
        " off (the default): it is never stored", ("on", "off")))


def check_correction(settings: CorrectionSettings) -> None:
    """Raises ``SettingsError`` naming the setting that is wrong."""
    from server.features.correction.entities import entity_types  # here: the package is imported on demand

    try:
        entity_types(settings.redaction_entities)
    except ValueError as exc:
        raise SettingsError(f"VOXLANE_REDACTION_ENTITIES: {exc}") from None
