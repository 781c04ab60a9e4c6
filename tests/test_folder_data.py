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
    with pytest.raises(UserError, match="22050 Hz, not 16000 Hz.*sox.*--set data.resample=true"):
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


def test_files_in_hidden_folders_are_not_recordings(tmp_path):
    """Audit: hidden files were skipped but not hidden folders: Jupyter's .ipynb_checkpoints/ copies were
    read as more recordings (a copy of a training recording could land in test)."""
    root = make_csv_folder(tmp_path / "imu")
    plain = load_task(str(root), window=40, hop=20)
    for label in ("walk", "run"):
        hidden = root / label / ".ipynb_checkpoints"
        hidden.mkdir()
        (hidden / f"subj0_nohash_{label}-checkpoint.csv").write_bytes((root / label / f"subj0_nohash_{label}.csv").read_bytes())
    d = load_task(str(root), window=40, hop=20)
    assert d.info["examples"] == plain.info["examples"] and d.info["groups"] == plain.info["groups"]


def test_a_channel_in_small_units_is_normalized_and_a_constant_one_is_not(tmp_path):
    """Audit: a channel whose spread was under 1e-6 (e.g. in units of 1e-7) counted as constant: not scaled."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 10, 3))
    X[..., 2] = 9.81  # constant
    loaded = {}
    for name, scale in (("unit", 1.0), ("micro", 1e-7)):
        np.savez(tmp_path / f"{name}.npz", X=X * [1.0, scale, 1.0], y=np.arange(60) % 2)
        loaded[name] = load_task(str(tmp_path / f"{name}.npz")).normalization()
    (mean, std), (mean_micro, std_micro) = loaded["unit"], loaded["micro"]
    np.testing.assert_allclose(std_micro[1], 1e-7 * std[1], rtol=1e-5)
    assert std[2] == std_micro[2] == 1.0 and mean[2] == pytest.approx(9.81)


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
    # string labels with class_names: the names' order is the class order (audit: it was ignored)
    np.savez(tmp_path / "s.npz", X=X, y=np.array(["x", "y", "z"])[y], class_names=np.array(["z", "x", "y"]))
    s = load_task(str(tmp_path / "s.npz"))
    assert s.class_names == ["z", "x", "y"]
    truth = {row.tobytes(): label for row, label in zip(X, np.array(["x", "y", "z"])[y])}
    for Xs, ys in ((s.X_train, s.y_train), (s.X_val, s.y_val), (s.X_test, s.y_test)):
        assert [s.class_names[k] for k in ys] == [truth[row.tobytes()] for row in Xs]  # each window keeps its label
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
    ("csv_semicolons", "separates its columns with semicolons: save it with commas"),
    ("csv_channels", "different channel counts"),
    ("csv_nan", "NaN"),
    ("wav_corrupt", "not a readable PCM WAV"),
    ("wav_no_samples", "holds no audio samples"),
    ("too_few_groups", "at least 3"),
    ("missing", "data path .*nowhere does not exist: give an existing data folder or .npz file"),
    ("not_npz", "not a .npz"),
    ("npz_pickle", "pickled objects"),
    ("npz_no_y", "no array 'y'"),
    ("npz_shape", r"X must be a real numeric array \[N, T, C\]"),
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
        elif case == "csv_semicolons":  # (a spreadsheet saved in a decimal-comma locale)
            bad.write_text("x;y\n1,5;2\n3;4,25\n")
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
    elif case == "wav_no_samples":
        for i in range(3):
            write_wav(root / "a" / f"s{i}_nohash_0.wav", tone(300))
            write_wav(root / "b" / f"s{i}_nohash_0.wav", tone(900))
        write_wav(root / "b" / "s0_nohash_1.wav", tone(900)[:0])
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


X6 = np.ones((6, 4, 2))


@pytest.mark.parametrize("arrays, message", [
    (dict(X=np.ones((6, 4, 0)), y=np.arange(6) % 2), r"X has no channels \(shape \(6, 4, 0\)\).*at least one channel"),
    (dict(X=np.ones((6, 0, 2)), y=np.arange(6) % 2), r"X has no time steps \(shape \(6, 0, 2\)\).*at least 1 step"),
    (dict(X=np.ones((0, 4, 2)), y=np.zeros(0, int)), r"holds only 0 example\(s\): at least 3 are needed .*add data"),
    (dict(X=np.ones((2, 4, 2)), y=np.array([0, 1])), r"holds only 2 example\(s\): at least 3 are needed"),
    (dict(X=X6, y=np.array([100, 200, 300] * 2)), r"labels y must be 0..K-1 .*from 100 to 300: map them .*or save string labels"),
    (dict(X=X6, y=np.array([0, 5, 9] * 2)), r"labels y must be 0..K-1 with every class used, found 3 distinct values from 0 to 9"),
    (dict(X=X6, y=np.array([-1, 0, 1] * 2)), r"labels y must be 0..K-1 .*from -1 to 1"),
    (dict(X=X6, y=np.zeros(6, int)), r"y holds only one label \(0\): a classifier needs at least two classes"),
    (dict(X=X6, y=np.array(["cat"] * 6)), r"y holds only one label \(cat\)"),
    (dict(X=X6, y=np.arange(6) % 2, class_names=np.array(["a", "b", "c"])), r"y has 2 classes .*class_names lists 3"),
    (dict(X=X6, y=np.array(["a", "b"] * 3), class_names=np.array(["a", "c"])), r"class_names \(a, c\) must name each label of y once; y holds a, b"),
    (dict(X=X6, y=np.array(["a", "b"] * 3), class_names=np.array(["a", "b", "a"])), r"class_names \(a, b, a\) must name each label"),
    (dict(X=X6, y=np.arange(6) % 3, groups=np.array(["s0", "s1"] * 3)), r"found only 2 .*groups come from the groups array of"),
    (dict(X=X6 * 1j, y=np.arange(6) % 2), r"real numeric array .*complex: save the real and imaginary parts"),
    # (audit: a 0-d class_names or groups array was a TypeError traceback, a 2-d one a confusing count)
    (dict(X=X6, y=np.arange(6) % 2, class_names=np.array("ab")), r"class_names must be a 1-d array \[K\], got shape \(\)"),
    (dict(X=X6, y=np.arange(6) % 2, class_names=np.array([["a", "b"]])), r"class_names must be a 1-d array \[K\], got shape \(1, 2\)"),
    (dict(X=X6, y=np.arange(6) % 2, groups=np.array(5)), r"groups must be a 1-d array \[N\], got shape \(\)"),
    # (audit: a float64 value beyond float32 passed the finite check, became inf and the run "diverged")
    (dict(X=np.where(np.arange(6)[:, None, None] == 0, 1e39, X6), y=np.arange(6) % 2), r"X holds values beyond float32's range"),
])
def test_bad_npz_gets_one_clear_line(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(UserError, match=message) as err:
        load_task(str(tmp_path / "d.npz"))
    assert "\n" not in str(err.value) and "_nohash_" not in str(err.value)


@pytest.mark.parametrize("kind, options, message", [
    ("npz", {"test_fraction": 1.5}, r"option test_fraction=1.5 of .* is out of range: choose a fraction above 0 and below 1"),
    ("npz", {"val_fraction": -0.2}, r"option val_fraction=-0.2 of .* is out of range: choose a fraction above 0 and below 1"),
    # (audit: a fraction of 0 was silently one group, and moved the other split's groups)
    ("npz", {"val_fraction": 0.0}, r"option val_fraction=0.0 of .* is out of range: .*each split holds at least one group"),
    ("csv", {"test_fraction": 0.0}, r"option test_fraction=0.0 of .* is out of range: choose a fraction above 0"),
    ("npz", {"val_fraction": 0.5, "test_fraction": 0.5}, "leave no training data: choose fractions whose sum is below 1"),
    ("csv", {"hop": 0}, r"option hop=0 of .* is out of range: choose 1 or more rows"),
    ("csv", {"window": 0}, r"option window=0 of .* is out of range: choose 1 or more rows"),
    ("csv", {"window": 1000}, r"no CSV recording reaches the window of 1000 rows \(the longest has 120\): choose data.window=120 or less"),
    ("csv", {"test_fraction": 1.0}, r"option test_fraction=1.0 of .* is out of range"),
    ("wav", {"clip_seconds": 0.0}, r"option clip_seconds=0.0 of .* is out of range: choose a length of at least 0.025 s"),
    ("wav", {"clip_seconds": -1.0}, r"option clip_seconds=-1.0 of .* is out of range"),
    ("wav", {"features": {"foo": 1}}, r"unknown feature option\(s\) foo for .*valid keys of data.features are sample_rate, win, hop"),
    ("wav", {"features": {"hop": "x"}}, r"option features.hop='x' of .* must be an integer"),
    ("wav", {"features": 3}, r"option features=3 of .* must be a table such as \{hop = 320\}"),
    ("wav", {"val_fraction": 2.0}, r"option val_fraction=2.0 of .* is out of range"),
])
def test_out_of_range_loader_options_get_one_clear_line(tmp_path, kind, options, message):
    extra = {}
    if kind == "npz":
        root = tmp_path / "d.npz"
        np.savez(root, X=X6, y=np.arange(6) % 2)
    elif kind == "csv":
        root = make_csv_folder(tmp_path / "imu")
    else:
        root, extra = make_wav_folder(tmp_path / "words", speakers=3), {"progress": False}
    with pytest.raises(UserError, match=message) as err:
        load_task(str(root), cache_dir=tmp_path / "cache", **extra, **options)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists()  # refused before any feature is computed


def test_csv_default_window_refuses_a_truncated_recording(tmp_path):
    root = make_csv_folder(tmp_path / "imu")
    write_csv(root / "walk" / "subj0_nohash_walk.csv", np.ones((1, 3)))
    with pytest.raises(UserError, match=r"subj0_nohash_walk.csv has only 1 row\(s\), under half the median length of 120.*"
                                        r"fix or remove that recording, or set data.window \(e.g. 120"):
        load_task(str(root))
    assert load_task(str(root), window=120).X_train.shape[1] == 120  # the fix it names works (1 recording skipped)
    write_csv(root / "walk" / "subj0_nohash_walk.csv", np.ones((70, 3)))  # shorter, but not under half: the default
    assert load_task(str(root)).X_train.shape[1] == 70


def test_csv_label_without_a_whole_window_is_refused(tmp_path):
    root = make_csv_folder(tmp_path / "imu")
    for r in range(6):
        write_csv(root / "run" / f"subj{r}_nohash_run.csv", np.ones((30, 3)))
    with pytest.raises(UserError, match=r"no CSV recording of label\(s\) run reaches the window of 40 rows, so those "
                                        r"classes would have no examples: choose data.window=30 or less"):
        load_task(str(root), window=40)


@pytest.mark.parametrize("task", ["/nonexistent/path", "data/imu-nowhere", "missing-dataset.npz"])
def test_a_missing_data_path_is_named_as_such(task):
    import re
    with pytest.raises(UserError, match=re.escape(f"data path {task} does not exist: give an existing data folder or .npz file")):
        load_task(task)


def test_cli_prints_one_error_line_for_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "training.train", "--task", str(tmp_path / "empty"),
                           "--out", str(tmp_path / "run"), "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error: ") and "is empty" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_data_path_is_the_same_task_however_it_is_written(tmp_path, monkeypatch):
    """Audit: `--task data/csv/` after `--task data/csv` (or ./data/csv) was "another task"."""
    from training.config import load_config
    from training.data.base import same_task
    (tmp_path / "csv").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_config("csv/").task == "csv" == load_config("./csv").task
    assert same_task("csv/", str(tmp_path / "csv")) and same_task("watch", "watch")
    assert not same_task("watch", "kws") and not same_task("csv", str(tmp_path))


def test_csv_text_encoding(tmp_path):
    """A byte-order mark is not taken for a header (audit: the first row was dropped); Latin-1 text is
    one line saying to save as UTF-8."""
    from training.data.folder import read_csv_recording
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeff1,2\n3,4\n".encode("utf-8"))
    np.testing.assert_array_equal(read_csv_recording(bom), [[1, 2], [3, 4]])
    latin = tmp_path / "latin.csv"
    latin.write_bytes("temp\xe9rature,b\n1,2\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8 text.*save it as UTF-8"):
        read_csv_recording(latin)


def test_a_split_missing_classes_is_warned_about(tmp_path, capsys):
    """Audit: a test split of one clip trained silently and reported 100%."""
    from training.data.folder import load_npz
    rng = np.random.default_rng(0)
    path = tmp_path / "few.npz"
    np.savez(path, X=rng.standard_normal((6, 4, 2)).astype(np.float32), y=np.array([0, 1, 0, 1, 0, 1]),
             groups=np.array(list("abcdef")))  # one example per group: val and test get one each
    d = load_npz(path, val_fraction=0.2, test_fraction=0.2)
    err = capsys.readouterr().err
    short = [s for s in ("train", "val", "test") if len(set(getattr(d, f"y_{s}").tolist())) < 2]
    assert short and all(f"warning: the {s} split" in err for s in short), err


def _damaged_npz(tmp_path: Path, how: str) -> Path:
    """A good training .npz, then damaged the way a copy or a disk damages files."""
    path = tmp_path / "d.npz"
    np.savez(path, X=np.random.default_rng(0).normal(size=(30, 8, 3)), y=np.arange(30) % 3)
    data = bytearray(path.read_bytes())
    if how == "cut short":
        data = data[:len(data) // 2]
    elif how == "one byte flipped":
        data[len(data) // 3] ^= 0xFF  # inside X's bytes: the member's CRC no longer matches
    elif how == "text":
        data = bytearray(b"X,y\n1,2\n")
    elif how == "empty":
        data = bytearray()
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how, message", [
    ("cut short", r"is cut short or damaged"),
    ("one byte flipped", r"is cut short or damaged .*CRC"),
    ("text", r"is not an .npz archive \(no zip header\)"),
    ("empty", r"is empty"),
])
def test_a_damaged_npz_gets_one_clear_line(tmp_path, how, message):
    """Audit: a truncated or corrupted .npz gave BadZipFile's traceback; a text file was called pickled."""
    path = _damaged_npz(tmp_path, how)
    with pytest.raises(UserError, match=message) as err:
        load_task(str(path))
    assert "\n" not in str(err.value) and "numpy.savez" in str(err.value)


def test_an_npz_member_that_is_not_an_array_is_refused(tmp_path):
    import zipfile
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((6, 4, 2)), y=np.arange(6) % 2)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("notes.txt", "not an array")  # np.load hands such a member back as raw bytes
    with pytest.raises(UserError, match=r"has a member 'notes.txt' that is not a numpy array"):
        load_task(str(path))


def test_a_damaged_feature_cache_is_rebuilt(tmp_path, capsys):
    """Audit: a truncated WAV feature cache gave BadZipFile's traceback on every later run."""
    root = make_wav_folder(tmp_path / "wav")
    first = load_task(str(root), cache_dir=tmp_path / "cache")
    (cache,) = (tmp_path / "cache").glob("wav-*.npz")
    cache.write_bytes(cache.read_bytes()[:100])
    again = load_task(str(root), cache_dir=tmp_path / "cache")
    assert "computing the features again" in capsys.readouterr().err
    np.testing.assert_array_equal(first.X_train, again.X_train)
    assert load_task(str(root), cache_dir=tmp_path / "cache").X_train.shape == first.X_train.shape  # rebuilt whole
