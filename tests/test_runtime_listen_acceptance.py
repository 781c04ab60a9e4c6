"""Acceptance of ``python -m runtime listen`` on a real keyword-spotting model (slow: needs a trained kws model).

A WAV strings 30 synthesised keywords spoken by held-out (test-split) voices, with silence, noise
and distractor words between them (``training.data.kws_stream``); ``listen`` streams it through
the log-mel front-end and the streaming model and is scored against the ground truth.
Needs ``runs/kws-gru`` (``python -m training.train --task kws --arch gru``) or an exported
``artifacts/kws-gru`` folder; measured on 2026-11: 28/30 found, 2.0 false alarms/min (seed 0).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_listen_finds_keywords_from_unseen_voices(tmp_path):
    model = next((p for p in (ROOT / "artifacts/kws-gru", ROOT / "runs/kws-gru/model.safetensors") if p.exists()), None)
    if model is None:
        pytest.skip("no kws model: run `python -m training.train --task kws --arch gru` first")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    wav = tmp_path / "stream.wav"
    subprocess.run([sys.executable, "-m", "training.data.kws_stream", str(wav), "--keywords", "30", "--seed", "0"],
                   check=True, cwd=ROOT, env=env, capture_output=True, timeout=600)
    p = subprocess.run([sys.executable, "-m", "runtime", "listen", "--model", str(model), "--wav", str(wav),
                        "--truth", f"{wav}.json", "--jsonl"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    score = json.loads(p.stdout.strip().splitlines()[-1])["score"]
    print(score)
    # The bar for synthetic speech from unseen voices: most keywords, few false alarms.
    assert score["detection_rate"] >= 0.8, score
    assert score["false_alarms_per_min"] <= 5.0, score
