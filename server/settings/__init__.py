"""Settings from ``voxlane serve`` flags and ``VOXLANE_*`` variables, validated once at start.

Each field declares its environment name, so deployment scripts and the CLI agree on one spelling; a bad value
stops the server with one line naming the setting. Each module of the package is one group of settings with its
own check; :mod:`server.settings.settings` joins them into :class:`Settings`.
"""

from server.settings.auth import JWT_AUDIENCE_REQUIRED
from server.settings.base import SettingsError
from server.settings.inference import riva_metadata_pairs
from server.settings.settings import Settings

__all__ = ["JWT_AUDIENCE_REQUIRED", "Settings", "SettingsError", "riva_metadata_pairs"]
