"""The synthetic keyword task (training/data/kws.py) on its tiny subset, and its speech pieces."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import UserError
from training.data import kws, load_task
from training.data import speech_synth as synth


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("kws-cache")
    return cache, load_task("kws", cache_dir=cache, seed=3, subset="tiny", progress=False)


def test_tiny_shapes_and_labels(tiny):
    _, d = tiny
    assert d.class_names == list(kws.CLASS_NAMES) and len(d.class_names) == 12
    assert d.class_names[-2:] == ["_unknown_", "_silence_"]
    for split, per_class in zip(("train", "val", "test"), kws.PRESETS["tiny"]["per_class"]):
        X, y = getattr(d, f"X_{split}"), getattr(d, f"y_{split}")
        assert X.shape == (12 * per_class, 49, 40) and X.dtype == np.float32
        assert np.bincount(y, minlength=12).tolist() == [per_class] * 12
        assert np.all(np.isfinite(X))
    assert d.info["synthetic"] is True and "espeak-ng" in d.info["source"]
    assert d.info["features"]["n_mels"] == 40 and d.info["features"]["hop"] == 320


def test_no_voice_is_in_two_splits(tiny):
    _, d = tiny
    v = d.info["voices"]
    assert v["train"] and v["val"] and v["test"]
    assert not set(v["train"]) & set(v["test"]) and not set(v["train"]) & set(v["val"]) and not set(v["val"]) & set(v["test"])
    with np.load(d.info["cache_file"], allow_pickle=False) as z:
        used = {s: set(z[f"voice_{s}"]) - {""} for s in ("train", "val", "test")}
        words = {s: z[f"word_{s}"] for s in ("train", "val", "test")}
        y_test = z["y_test"]
    assert not used["train"] & used["test"] and not used["train"] & used["val"]
    assert used["test"] <= set(v["test"])
    # the clips say what their label says
    names = np.array(kws.CLASS_NAMES)[y_test]
    for name, word in zip(names, words["test"]):
        assert word == name if name in kws.KEYWORDS else (word in kws.UNKNOWN_WORDS if name == "_unknown_" else word == "")


def test_voice_split_is_the_same_for_every_seed():
    p = kws.make_params("full")
    g = kws.voices_by_split(p)
    assert all(kws.split_of(v, p) == s for s, vs in g.items() for v in vs)
    assert sum(len(vs) for vs in g.values()) == len(synth.available_voices(p.engines))
    # kal and kal16 are one flite speaker: never split apart
    assert len({kws.split_of(synth.Voice("flite", n, "kal"), p) for n in ("kal", "kal16")}) == 1


def test_cached_and_deterministic(tiny, monkeypatch):
    cache, d = tiny
    files = list(cache.glob("kws-*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(kws, "run_sessions", lambda *a, **k: pytest.fail("regenerated instead of using the cache"))
    again = load_task("kws", cache_dir=cache, seed=3, subset="tiny", progress=False)
    assert np.array_equal(again.X_train, d.X_train) and np.array_equal(again.y_test, d.y_test)
    # the plan (what is said, by whom, how) depends on the seed and only on it
    p, groups = kws.make_params("tiny"), kws.voices_by_split(kws.make_params("tiny"))
    assert kws.plan(p, 3, groups) == kws.plan(p, 3, groups)
    assert kws.plan(p, 3, groups) != kws.plan(p, 4, groups)
    assert kws.cache_key(p, 3, groups) != kws.cache_key(kws.make_params("tiny", snr_db=(0, 10)), 3, groups)


def test_regenerating_gives_the_same_features(tiny, tmp_path):
    _, d = tiny
    fresh = load_task("kws", cache_dir=tmp_path, seed=3, subset="tiny", progress=False)
    assert np.array_equal(fresh.X_test, d.X_test)


def test_synthesis_in_one_call_splits_into_the_words():
    voice = synth.Voice("espeak", synth.espeak_variants()[0], synth.espeak_variants()[0])
    words = ["yes", "stop", "backward", "go"]
    together = synth.synthesize_many(voice, words, "en-us", 1.0, 50)
    alone = [synth.synthesize(voice, w, "en-us", 1.0, 50) for w in words]
    assert len(together) == 4
    for a, b in zip(together, alone):
        assert 0.1 < len(a) / 16000 < 1.0
        assert abs(len(a) - len(b)) < 0.25 * len(b)  # same word, same length give or take prosody


def test_clip_mixing_levels():
    p = kws.make_params("full")
    rng = np.random.default_rng(0)
    word = np.sin(np.arange(8000) * 0.3).astype(np.float32)
    clip = kws.place_in_clip(rng, word, p)
    assert clip.shape == (16000,) and np.abs(clip).max() <= 1.0
    silence = kws.place_in_clip(rng, None, p)
    assert synth.rms(silence) < 10 ** (p.silence_dbfs[1] / 20) * 1.01


def test_missing_espeak_names_the_apt_package(monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    synth.espeak_variants.cache_clear()
    try:
        with pytest.raises(UserError, match=r"apt-get install espeak-ng"):
            load_task("kws", cache_dir="/nonexistent", subset="tiny")
    finally:
        synth.espeak_variants.cache_clear()


def test_bad_options():
    with pytest.raises(UserError, match="unknown kws subset"):
        kws.make_params("huge")
    with pytest.raises(UserError, match="unknown kws option"):
        kws.make_params("tiny", voices=3)
    with pytest.raises(UserError, match="plain words"):
        synth.synthesize(synth.Voice("espeak", "f3", "f3"), "--help")


@pytest.mark.parametrize("options, message", [
    ({"features": {"foo": 1}}, r"unknown feature option\(s\) foo for task kws: valid keys of data.features are sample_rate, win, hop"),
    ({"features": {"hop": "x"}}, r"option features.hop='x' of task kws must be an integer"),
    ({"features": "mel"}, r"option features='mel' of task kws must be a table"),
    ({"clip_seconds": 0.0}, r"option clip_seconds=0.0 of task kws is out of range: choose a length of at least 0.025 s"),
    ({"test_fraction": 1.5}, r"option test_fraction=1.5 of task kws is out of range: choose a fraction above 0 and below 1"),
    ({"val_fraction": 0.0}, r"option val_fraction=0.0 of task kws is out of range: choose a fraction above 0 and below 1"),
    ({"val_fraction": 0.5, "test_fraction": 0.6}, "leave no training data"),
    ({"pitch": [80, 20]}, r"option pitch=\[80, 20\] of task kws is out of range: choose a range \[low, high\] of espeak pitches"),
    ({"pitch": [20]}, r"option pitch=\[20\] of task kws is out of range"),
    ({"speed": [0.0, 1.0]}, r"option speed=\[0.0, 1.0\] of task kws is out of range: choose a range \[low, high\] of positive"),
    ({"snr_db": [30.0, 5.0]}, r"option snr_db=\[30.0, 5.0\] of task kws is out of range"),
])
def test_bad_feature_and_out_of_range_options_are_one_line(options, message):
    with pytest.raises(UserError, match=message) as err:
        kws.make_params("tiny", **options)
    assert "\n" not in str(err.value)
    assert kws.make_params("tiny", features={"hop": 160}).feature_config.hop == 160  # a valid key still works


def test_keyword_stream_for_the_listen_app(tmp_path):
    import json
    from runtime.wav import read_wav
    from training.data.kws_stream import make_keyword_stream
    truth = make_keyword_stream(tmp_path / "s.wav", seed=1, n_keywords=6, distractors=0.5)
    audio, rate = read_wav(tmp_path / "s.wav")
    meta = json.loads((tmp_path / "s.wav.json").read_text())
    assert [lab for lab, _ in truth] and all(lab in kws.KEYWORDS for lab, _ in truth) and len(truth) == 6
    assert len(set(lab for lab, _ in truth)) == 6  # cycles through different keywords
    assert abs(len(audio) / rate - meta["duration_s"]) < 1e-3
    test_voices = {v.id for v in kws.voices_by_split(kws.KwsParams())["test"]}
    events = meta["events"]
    assert all(e["voice"] in test_voices for e in events)
    starts = [e["start_s"] for e in events]
    assert starts == sorted(starts) and all(b["start_s"] - a["end_s"] >= 1.0 for a, b in zip(events, events[1:]))
    for e in events:  # each word is louder than the pause before it
        s, w = int(e["start_s"] * rate), int(e["end_s"] * rate)
        word, pause = synth.rms(audio[s:w]), synth.rms(audio[s - rate // 2:s - rate // 10])
        assert word > 2 * pause, e
    # same seed, same stream
    assert make_keyword_stream(tmp_path / "t.wav", seed=1, n_keywords=6, distractors=0.5) == truth
    assert np.array_equal(read_wav(tmp_path / "t.wav")[0], audio)


def test_feature_options_reach_the_front_end(tmp_path):
    d = load_task("kws", cache_dir=tmp_path, subset="tiny", features={"hop": 160}, progress=False)
    assert d.X_train.shape[1:] == (98, 40) and d.info["features"]["hop"] == 160


def test_exported_kws_folder_carries_its_front_end(tiny, tmp_path):
    """listen on an artifact folder must use the features the model was trained on (here a 20 ms hop,
    not the 10 ms default): export records them in the manifest; listen refuses a mismatched window."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from export.pipeline import export_artifacts
    from training.config import load_config
    from training.data.kws_stream import make_keyword_stream
    from training.trainer import train
    _, data = tiny
    cfg = load_config("kws", arch="gru", epochs="1", hidden="8", out=str(tmp_path / "run"))
    train(cfg, data=data, progress=False)
    out = tmp_path / "artifacts"
    export_artifacts(tmp_path / "run" / "model.safetensors", out, task="kws", kinds=["onnx"], progress=False,
                     data=data)
    man = json.loads((out / "manifest.json").read_text())
    assert man["preprocess"]["features"]["hop"] == 320 and man["model"]["seq_len"] == 49
    make_keyword_stream(tmp_path / "s.wav", seed=1, n_keywords=2, distractors=0.0)
    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, "-m", "runtime", "listen", "--model", str(out), "--wav", str(tmp_path / "s.wav")],
                       capture_output=True, text=True, cwd=root, timeout=300)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    # the same folder without the recorded front-end: one clear line, not a silent 10 ms hop
    del man["preprocess"]["features"]
    (out / "manifest.json").write_text(json.dumps(man))
    p = subprocess.run([sys.executable, "-m", "runtime", "listen", "--model", str(out), "--wav", str(tmp_path / "s.wav")],
                       capture_output=True, text=True, cwd=root, timeout=300)
    assert p.returncode == 2 and p.stderr.strip().startswith("error:") and "49-frame" in p.stderr, p.stderr
