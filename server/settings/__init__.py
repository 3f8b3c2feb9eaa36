"""Settings from ``voxlane serve`` flags and ``VOXLANE_*`` variables, validated once at start.

A field's environment name is its own, upper-cased after ``VOXLANE_``, and its flag the same with dashes, so
deployment scripts and the CLI cannot disagree on a spelling; a bad value stops the server with one line naming
the setting. Each module of the package is one group of settings with its own check;
:mod:`server.settings.settings` joins them into :class:`Settings`.
"""

from server.settings.auth import JWT_AUDIENCE_REQUIRED
from server.settings.base import SettingsError
from server.settings.inference import riva_metadata_pairs
from server.settings.settings import Settings

__all__ = ["JWT_AUDIENCE_REQUIRED", "Settings", "SettingsError", "riva_metadata_pairs"]
