"""The training state's last.json goes through the shared artefact check (icpd.artifacts.formats):
a missing, foreign, newer or incomplete one is refused naming the file and what to do."""

from __future__ import annotations

import json

import pytest

from icpd.training.train_state import STATE_FORMAT, STATE_VERSION, load_state

COMPLETE = {"format": STATE_FORMAT, "format_version": STATE_VERSION, "epoch": 1, "config": {},
            "encoder_fingerprint": "", "optimizer": {}, "scaler": {}, "rng": {}}


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (None, r"last\.json: file not found; start the run afresh without resume=True"),
        ("{", "not valid JSON"),
        (json.dumps({**COMPLETE, "format": "icpd-model"}), "not an icpd training state"),
        (json.dumps({**COMPLETE, "format_version": STATE_VERSION + 1}), "newer than this icpd reads"),
        (json.dumps({k: v for k, v in COMPLETE.items() if k != "rng"}), "lacks rng"),
    ],
)
def test_unusable_training_state_is_refused(tmp_path, content, phrase):
    if content is not None:
        (tmp_path / "last.json").write_text(content)
    with pytest.raises(ValueError, match=phrase):
        load_state(tmp_path, None, None, None, None, "")
