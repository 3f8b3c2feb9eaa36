"""The settings of the correction pass (PII redaction): whether finals are redacted, of which types, and whether
the text as spoken is kept for its owner."""

from __future__ import annotations

from server.settings.base import reported_as, setting, settings_group

__all__ = ["REDACTION_ENTITIES", "CorrectionSettings", "check_correction"]

REDACTION_ENTITIES = "EMAIL,PHONE,CREDIT_CARD,ACCOUNT,IP_ADDRESS,PERSON"


@settings_group
class CorrectionSettings:
    disable_redaction: str = setting("off", "on: transcripts keep the personal data they say (e-mail addresses, phone,"
        " card and account numbers, IP addresses, names); off (the default): the correction pass replaces it by typed"
        " placeholders such as [EMAIL] before a final is stored or sent", ("on", "off"))
    redaction_entities: str = setting(
        REDACTION_ENTITIES, f"comma-separated types the redaction replaces, some of {REDACTION_ENTITIES}")
    keep_unredacted: str = setting("off", "on: the text as spoken is stored beside the redacted one, readable only by"
        " the transcript's owner with the transcripts:unredacted scope (GET /v1/transcripts/{id}/unredacted); off (the"
        " default): it is never stored", ("on", "off"))


def check_correction(settings: CorrectionSettings) -> None:
    """Raises ``SettingsError`` naming the setting that is wrong."""
    from server.features.correction.entities import entity_types  # here: the package is imported on demand

    with reported_as("VOXLANE_REDACTION_ENTITIES"):
        entity_types(settings.redaction_entities)
