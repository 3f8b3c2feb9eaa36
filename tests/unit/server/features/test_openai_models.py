"""The model ids OpenAI clients name: the SDK's own list, and the operator's map (VOXLANE_OPENAI_MODELS)."""

from __future__ import annotations

from typing import get_args

import pytest
from openai.types import AudioModel
from openai.types.realtime.audio_transcription import AudioTranscription

from server.features.openai_models import OPENAI_TRANSCRIPTION_MODELS, ModelMap, ModelNotServed
from server.settings import Settings, SettingsError


def _literals(annotation) -> set[str]:
    out: set[str] = set()
    for arg in get_args(annotation):
        out |= {a for a in get_args(arg) if isinstance(a, str)} if get_args(arg) else set()
    return out


def test_the_ids_are_the_sdks():
    sdk = set(get_args(AudioModel)) | _literals(AudioTranscription.model_fields["model"].annotation)
    assert sdk and set(OPENAI_TRANSCRIPTION_MODELS) == sdk


def test_every_openai_id_means_the_served_model_by_default():
    models = ModelMap.of(Settings(model="/models/small.en"))
    assert models.ids() == ["small.en", *OPENAI_TRANSCRIPTION_MODELS]
    assert {models.resolve(m) for m in ["/models/small.en", "small.en", *OPENAI_TRANSCRIPTION_MODELS]} == {"small.en"}
    with pytest.raises(ModelNotServed) as info:
        models.resolve("gpt-9")
    assert "not served" in str(info.value) and info.value.available == models.ids()


def test_an_operator_maps_ids():
    models = ModelMap.of(Settings(model="tiny.en", openai_models="whisper-1, my-asr, gpt-4o-transcribe=large-v3"))
    assert models.ids() == ["tiny.en", "whisper-1", "my-asr"]
    assert models.resolve("my-asr") == "tiny.en"
    with pytest.raises(ModelNotServed, match="maps to 'large-v3', which this server does not run"):
        models.resolve("gpt-4o-transcribe")
    with pytest.raises(ModelNotServed, match="not served"):
        models.resolve("gpt-4o-mini-transcribe")  # 'openai' is not in the list


@pytest.mark.parametrize("bad", ["a b", "x=", "=y", "ü", ",".join(["m"] * 101)])
def test_a_bad_map_stops_the_server(bad: str):
    with pytest.raises(SettingsError, match="VOXLANE_OPENAI_MODELS"):
        Settings(openai_models=bad).validate()
