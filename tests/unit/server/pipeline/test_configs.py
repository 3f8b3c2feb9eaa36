"""The settings as the ASR backend gets them: the calibration a fleet's operator knows beforehand reaches a live
node's backend, and 0 leaves it to be timed."""

from __future__ import annotations

from server.pipeline.configs import backend_config
from server.settings import Settings


def test_a_known_calibration_reaches_a_live_backend_and_0_leaves_it_timed(tmp_path) -> None:
    known = backend_config(Settings(data_dir=str(tmp_path), calibration_seconds=0.18))
    assert known.calibrate and known.calibration_s == 0.18
    assert backend_config(Settings(data_dir=str(tmp_path))).calibration_s is None
    assert not backend_config(Settings(data_dir=str(tmp_path), calibration_seconds=0.18), live=False).calibrate
