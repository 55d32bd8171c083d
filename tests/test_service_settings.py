"""service/settings.py: defaults, environment and flags."""

from __future__ import annotations

import pytest

from stylegate.service.settings import Settings


def test_settings_from_env_and_flags():
    s = Settings.load(
        env={
            "STYLEGATE_PORT": "6000",
            "STYLEGATE_LOG_JSON": "false",
            "STYLEGATE_BATCH_WINDOW_MS": "0.5",
        },
        metrics_port=0,
        port=None,
    )
    assert (s.port, s.log_json, s.batch_window_ms, s.metrics_port) == (6000, False, 0.5, 0)
    with pytest.raises(ValueError, match="STYLEGATE_MAX_STEPS"):
        Settings.load(env={"STYLEGATE_MAX_STEPS": "many"})
