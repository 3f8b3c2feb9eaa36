"""The one :class:`Settings` of a node: every group's fields together, read from ``voxlane serve`` flags and
``VOXLANE_*`` variables and validated once at start, each group by its own check."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from server.settings.auth import AuthSettings, check_auth
from server.settings.base import check_field, convert_field
from server.settings.client_limits import ClientLimitSettings
from server.settings.correction import CorrectionSettings, check_correction
from server.settings.inference import InferenceSettings, check_inference
from server.settings.jobs import JobSettings, check_jobs
from server.settings.live import LiveSettings
from server.settings.llm import LLMSettings, check_llm
from server.settings.openai_compat import OpenAISettings, check_openai
from server.settings.platforms import PlatformSettings
from server.settings.serving import ServingSettings
from server.settings.storage import StorageSettings, check_shared_services

__all__ = ["Settings"]


# The bases are listed last group first: a dataclass takes its fields from the last base on, so ``--help`` (and
# ``fields(Settings)``) starts with the server's own settings.
@dataclass
class Settings(ClientLimitSettings, PlatformSettings, OpenAISettings, CorrectionSettings, LLMSettings, JobSettings,
               AuthSettings, StorageSettings, LiveSettings, InferenceSettings, ServingSettings):

    @classmethod
    def from_sources(cls, args: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Settings:
        """Flags win over environment variables, which win over defaults."""
        environ: Mapping[str, str] = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = (args or {}).get(f.name)
            source = f"--{f.name.replace('_', '-')}"
            if raw is None and f.metadata["env"] in environ:
                raw, source = environ[f.metadata["env"]], f.metadata["env"]
            if raw is None:
                continue
            values[f.name] = convert_field(f, raw, source)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raises ``SettingsError`` naming the first setting that is wrong: every field's bounds, then each group."""
        for f in fields(self):
            check_field(f, getattr(self, f.name), f.metadata["env"])
        check_auth(self)
        check_jobs(self)  # the outbound allowlist
        check_inference(self)
        check_llm(self)
        check_shared_services(self)  # database, Redis, S3
        check_correction(self)
        check_openai(self)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        for f in fields(Settings):
            m = f.metadata
            extra = f" (one of {', '.join(m['choices'])})" if m["choices"] else ""
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None,
                                help=f"{m['help']}{extra}; env {m['env']}")
