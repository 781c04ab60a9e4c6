"""Bring-your-own data (training/data/folder.py): WAV folders, CSV folders, .npz, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import UserError
from runtime.features import log_mel
from runtime.wav import write_wav
from training.data import load_task
from training.data.folder import assign_splits, group_of

ROOT = Path(__file__).resolve().parent.parent


def tone(freq: float, seconds: float = 1.0, rate: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def make_wav_folder(root: Path, speakers: int = 8, rate: int = 16000) -> Path:
    """Speech Commands layout: two 'words' (tones), files <speaker>_nohash_<n>.wav."""
    for label, freq in (("low", 300.0), ("high", 2500.0)):
        for s in range(speakers):
            for n in range(2):
                write_wav(root / label / f"spk{s:02d}_nohash_{n}.wav",
                          tone(freq * (1 + 0.02 * s), 0.8 + 0.1 * n, rate, seed=s * 10 + n), sample_rate=rate)
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "noise.wav", tone(50, 3.0))
    return root


def test_wav_folder_speech_commands_layout(tmp_path):
    root = make_wav_folder(tmp_path / "words")
    d = load_task(str(root), cache_dir=tmp_path / "cache", progress=False)
    assert d.class_names == ["high", "low"]  # _background_noise_ is not a label
    assert d.X_train.shape[1:] == (98, 40)
    assert len(d.X_train) + len(d.X_val) + len(d.X_test) == 32
    groups = d.info["groups"]
    assert not set(groups["train"]) & set(groups["test"]) and not set(groups["train"]) & set(groups["val"])
    assert d.info["synthetic"] is False and d.info["features"]["n_mels"] == 40
    # features are the runtime front-end's, of the clip zero-padded to 1 s
    f = Path(root / "low" / "spk00_nohash_0.wav")
    from runtime.wav import read_wav
    audio, _ = read_wav(f)
    clip = np.zeros(16000, dtype=np.float32)
    clip[:len(audio)] = audio
    X_all = np.concatenate([d.X_train, d.X_val, d.X_test])
    assert np.min(np.abs(X_all - log_mel(clip)).max(axis=(1, 2))) < 1e-6
    # second load comes from the cache and gives the same arrays
    assert list((tmp_path / "cache").glob("wav-words-*.npz"))
    again = load_task(str(root), cache_dir=tmp_path / "cache", progress=False)
    assert np.array_equal(again.X_train, d.X_train) and np.array_equal(again.y_test, d.y_test)


def test_wav_with_another_rate_is_refused_or_resampled(tmp_path):
    root = make_wav_folder(tmp_path / "words", speakers=3)
    write_wav(root / "low" / "odd_nohash_0.wav", tone(300, 1.0, rate=22050), sample_rate=22050)
    with pytest.raises(UserError, match="22050 Hz, not 16000 Hz.*sox"):
        load_task(str(root), cache_dir=tmp_path / "cache", progress=False)
    d = load_task(str(root), cache_dir=tmp_path / "cache", resample=True, progress=False)
    assert d.X_train.shape[1:] == (98, 40)


def write_csv(path: Path, data: np.ndarray, header: bool = True):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([",".join(f"ch{i}" for i in range(data.shape[1]))] if header else []) + \
            [",".join(f"{v:.5f}" for v in row) for row in data]
    path.write_text("\n".join(lines) + "\n")


def make_csv_folder(root: Path, recordings: int = 6, length: int = 120, channels: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for label, freq in (("walk", 0.05), ("run", 0.15)):
        for r in range(recordings):
            t = np.arange(length)[:, None]
            data = np.sin(2 * np.pi * freq * t + np.arange(channels)) + 0.1 * rng.standard_normal((length, channels))
            write_csv(root / label / f"subj{r}_nohash_{label}.csv", data, header=r % 2 == 0)
    return root


def test_csv_folder_windows_and_splits(tmp_path):
    root = make_csv_folder(tmp_path / "imu")
    d = load_task(str(root), window=40, hop=20)
    assert d.class_names == ["run", "walk"] and d.X_train.shape[1:] == (40, 3)
    per_recording = (120 - 40) // 20 + 1
    assert len(d.X_train) + len(d.X_val) + len(d.X_test) == 12 * per_recording
    g = d.info["groups"]
    assert not set(g["train"]) & set(g["test"])
    assert group_of(Path("subj3_nohash_walk.csv")) == "subj3"  # both labels of subj3 stay together
    # default window: the shortest recording
    assert load_task(str(root)).X_train.shape[1] == 120


def test_npz_with_and_without_groups(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 10, 2)).astype(np.float32), rng.integers(0, 3, 60)
    np.savez(tmp_path / "d.npz", X=X, y=y, class_names=np.array(["a", "b", "c"]))
    d = load_task(str(tmp_path / "d.npz"))
    assert d.class_names == ["a", "b", "c"] and d.X_train.shape[1:] == (10, 2)
    assert len(d.X_train) + len(d.X_val) + len(d.X_test) == 60
    groups = np.array([f"s{i % 6}" for i in range(60)])
    np.savez(tmp_path / "g.npz", X=X, y=np.array(["x", "y", "z"])[y], groups=groups)
    d = load_task(str(tmp_path / "g.npz"))
    assert d.class_names == ["x", "y", "z"]
    g = d.info["groups"]
    assert all(g[s] for s in g) and not set(g["train"]) & (set(g["val"]) | set(g["test"]))


def test_split_is_deterministic_and_stable():
    groups = [f"speaker{i}" for i in range(200)]
    a = assign_splits(groups)
    assert a == assign_splits(list(reversed(groups)))
    b = assign_splits(groups + ["newcomer"])
    assert all(b[g] == a[g] for g in groups)  # adding a speaker moves nobody else
    share = np.mean([v == "test" for v in a.values()])
    assert 0.04 < share < 0.2


@pytest.mark.parametrize("case, message", [
    ("empty", "is empty"),
    ("no_subfolders", "no label sub-folders"),
    ("one_label", "only one label"),
    ("empty_label", "has no .wav or .csv files"),
    ("mixed", "mixes .wav and .csv"),
    ("csv_ragged", "row 3 has 1 columns, the first has 2"),
    ("csv_text", "non-numeric"),
    ("csv_channels", "different channel counts"),
    ("csv_nan", "NaN"),
    ("wav_corrupt", "not a readable PCM WAV"),
    ("too_few_groups", "at least 3"),
    ("missing", "unknown task .*path of a data folder"),
    ("not_npz", "not a .npz"),
    ("npz_pickle", "pickled objects"),
    ("npz_no_y", "no array 'y'"),
    ("npz_shape", r"X must be a numeric array \[N, T, C\]"),
    ("npz_len", "one label per sequence"),
    ("unknown_option", "unknown option"),
])
def test_bad_data_gets_one_clear_line(tmp_path, case, message):
    root, opts = tmp_path / "data", {}
    root.mkdir()
    ok = np.ones((5, 2))
    if case == "no_subfolders":
        (root / "readme.txt").write_text("hi")
    elif case == "one_label":
        write_csv(root / "a" / "r.csv", ok)
    elif case == "empty_label":
        write_csv(root / "a" / "r.csv", ok)
        (root / "b").mkdir()
        (root / "b" / "notes.txt").write_text("not data")
    elif case == "mixed":
        write_csv(root / "a" / "r.csv", ok)
        write_wav(root / "b" / "r.wav", tone(300))
    elif case.startswith("csv_"):
        for i in range(3):
            write_csv(root / "a" / f"r{i}.csv", ok)
            write_csv(root / "b" / f"q{i}.csv", ok)
        bad = root / "b" / "q0.csv"
        if case == "csv_ragged":
            bad.write_text("1,2\n3,4\n5\n")
        elif case == "csv_text":
            bad.write_text("1,2\n3,x\n")
        elif case == "csv_channels":
            write_csv(bad, np.ones((5, 3)))
        elif case == "csv_nan":
            bad.write_text("1,2\nnan,4\n")
    elif case == "wav_corrupt":
        for i in range(3):
            write_wav(root / "a" / f"s{i}_nohash_0.wav", tone(300))
            write_wav(root / "b" / f"s{i}_nohash_0.wav", tone(900))
        (root / "b" / "s0_nohash_1.wav").write_bytes(b"RIFF....garbage")
    elif case == "too_few_groups":
        write_csv(root / "a" / "r.csv", ok)
        write_csv(root / "b" / "q.csv", ok)
    elif case == "missing":
        root = tmp_path / "nowhere"
    elif case == "not_npz":
        root = tmp_path / "x.txt"
        root.write_text("1")
    elif case.startswith("npz_"):
        root = tmp_path / "x.npz"
        X = np.ones((4, 3, 2))
        if case == "npz_pickle":
            np.savez(root, X=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
        elif case == "npz_no_y":
            np.savez(root, X=X)
        elif case == "npz_shape":
            np.savez(root, X=np.ones((4, 3)), y=np.zeros(4))
        elif case == "npz_len":
            np.savez(root, X=X, y=np.zeros(3))
    elif case == "unknown_option":
        for i in range(3):
            write_csv(root / "a" / f"r{i}.csv", ok)
            write_csv(root / "b" / f"q{i}.csv", ok)
        opts = {"windw": 3}
    with pytest.raises(UserError, match=message) as err:
        load_task(str(root), cache_dir=tmp_path / "cache", **opts)
    assert "\n" not in str(err.value)


def test_cli_prints_one_error_line_for_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "training.train", "--task", str(tmp_path / "empty"),
                           "--out", str(tmp_path / "run"), "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error: ") and "is empty" in proc.stderr
    assert "Traceback" not in proc.stderr
