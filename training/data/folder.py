"""Bring your own data: ``--task PATH`` with a folder of WAV or CSV files per label, or a ``.npz``.

Layouts:

* **WAV folder** (the Speech Commands layout): ``PATH/<label>/<file>.wav``, 16 kHz 16-bit PCM
  mono, about 1 s each (shorter clips are zero-padded at the end, longer ones cut to
  ``clip_seconds``). Features are the log-mel frames of :mod:`runtime.features`, the front-end
  the devices run. A folder named ``_background_noise_`` is skipped (Speech Commands keeps its
  noise recordings there). Another sample rate is refused with the ``sox`` command that converts
  it, unless the option ``resample=True`` is given (FFT resampling, :func:`runtime.wav.resample`).
* **CSV folder**: ``PATH/<label>/<recording>.csv``, each file one recording ``[T, C]`` (one row
  per time step, one numeric column per channel, an optional header row). Recordings are cut
  into windows of ``window`` rows every ``hop`` rows (defaults: the shortest recording, half of
  it; a recording under half the median length is refused then, since it would make every window
  that short). Recordings shorter than a given window are skipped, but every label must keep one.
* **.npz**: ``X [N, T, C]`` numeric, ``y [N]`` (integers ``0..K-1``, each used, or strings; K >= 2), optionally
  ``class_names [K]`` and ``groups [N]`` (who/what each example came from). Loaded with
  ``allow_pickle=False``: object arrays are refused.

Splits are deterministic and keep a group in one split: the group of a file is the part of its
name before ``_nohash_`` when present (Speech Commands' ``<speaker>_nohash_<n>.wav``), else its
name without extension (a CSV recording). A group goes to test / val / train by a hash of its id
(``test_fraction`` / ``val_fraction``, default 0.1 each), so adding files never moves others. For
a ``.npz`` without ``groups`` each example is its own group.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from runtime.atomic import atomic_path
from runtime.errors import UserError
from runtime.features import FeatureConfig, log_mel
from runtime.npz import NpzUnreadable, read_npz
from runtime.wav import WrongSampleRate, read_wav
from training.data.base import SequenceData, call_loader, check_fractions, check_range, clip_samples, feature_config

SKIP_FOLDERS = {"_background_noise_"}
SPLITS = ("train", "val", "test")
GROUPS_FROM_FILES = "`<speaker>_nohash_` file names, or file names"  # where a folder's groups come from


# -- splitting --------------------------------------------------------------------------------
def group_of(path: Path) -> str:
    """Speaker/recording id of a file: ``<speaker>`` of ``<speaker>_nohash_<n>``, else the stem."""
    stem = path.stem
    return stem.split("_nohash_", 1)[0] if "_nohash_" in stem else stem


def _unit(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16 ** 12


def assign_splits(groups: list[str], val_fraction: float = 0.1, test_fraction: float = 0.1,
                  groups_from: str = GROUPS_FROM_FILES) -> dict[str, str]:
    """Map each distinct group to a split by a hash of its id.

    If hashing leaves a split empty (few groups), the groups are ranked by hash instead and the
    first ones fill test, then val, so every split gets at least one group (needs >= 3 groups).
    """
    distinct = sorted(set(groups))
    if len(distinct) < 3:
        raise UserError(f"found only {len(distinct)} speaker/recording group(s); at least 3 are needed so that "
                        f"train, val and test hold different ones: add data (groups come from {groups_from})")
    out = {g: ("test" if _unit(g) < test_fraction else "val" if _unit(g) < test_fraction + val_fraction else "train")
           for g in distinct}
    if set(out.values()) != set(SPLITS):
        ranked = sorted(distinct, key=_unit)
        n_test = max(1, int(round(test_fraction * len(ranked))))
        n_val = max(1, int(round(val_fraction * len(ranked))))
        if n_test + n_val >= len(ranked):
            n_test, n_val = 1, 1
        out = {g: "test" if i < n_test else "val" if i < n_test + n_val else "train" for i, g in enumerate(ranked)}
    return out


def _split_arrays(name: str, class_names: list[str], X: np.ndarray, y: np.ndarray, groups: list[str],
                  val_fraction: float, test_fraction: float, info: dict,
                  groups_from: str = GROUPS_FROM_FILES) -> SequenceData:
    where = assign_splits(groups, val_fraction, test_fraction, groups_from)
    split = np.array([where[g] for g in groups])
    parts = {s: (X[split == s], y[split == s]) for s in SPLITS}
    info = {**info, "split_by": info.get("split_by", "group"),
            "groups": {s: sorted(g for g, v in where.items() if v == s)[:50] for s in SPLITS},
            "examples": {s: int((split == s).sum()) for s in SPLITS}}
    _warn_thin_splits(class_names, {s: y_s for s, (_, y_s) in parts.items()})
    return SequenceData(name, class_names, *parts["train"], *parts["val"], *parts["test"], info=info)


def _warn_thin_splits(class_names: list[str], labels: dict[str, np.ndarray]) -> None:
    """A warning (not an error: small data is legitimate) when a split misses classes, since its
    accuracy then says little: e.g. a test split of one clip reports 100% or 0%."""
    for s, y_s in labels.items():
        missing = [class_names[k] for k in range(len(class_names)) if not (y_s == k).any()]
        if missing:
            print(f"warning: the {s} split ({len(y_s)} example(s)) has no example of {', '.join(missing[:5])}"
                  f"{' ...' if len(missing) > 5 else ''}: its accuracy says little; add data (more groups) or "
                  f"{'lower data.val_fraction and data.test_fraction' if s == 'train' else f'change data.{s}_fraction'}",
                  file=sys.stderr)


# -- folders ----------------------------------------------------------------------------------
def _label_folders(root: Path) -> list[Path]:
    if not any(root.iterdir()):
        raise UserError(f"data folder {root} is empty: put one sub-folder per label in it, each holding .wav or .csv files")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in SKIP_FOLDERS)
    if not folders:
        raise UserError(f"data folder {root} has no label sub-folders: put one sub-folder per label in it, each holding .wav or .csv files")
    if len(folders) < 2:
        raise UserError(f"data folder {root} has only one label ({folders[0].name}): a classifier needs at least two label sub-folders")
    return folders


def _files_by_label(root: Path) -> tuple[str, list[str], list[list[Path]]]:
    """The file kind ('wav' | 'csv'), the labels, and each label's files (sorted)."""
    folders = _label_folders(root)
    files, kinds = [], set()
    for folder in folders:
        found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".wav", ".csv")
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts))  # (.ipynb_checkpoints/ too)
        if not found:
            raise UserError(f"label folder {folder} has no .wav or .csv files: add some or remove the folder")
        kinds |= {p.suffix.lower() for p in found}
        files.append(found)
    if len(kinds) > 1:
        raise UserError(f"data folder {root} mixes .wav and .csv files: use one kind per dataset")
    return kinds.pop().lstrip("."), [f.name for f in folders], files


def _cache_file(cache_dir, kind: str, root: Path, files: list[list[Path]], options: dict) -> Path:
    listing = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for fs in files for p in fs]
    key = hashlib.sha256(json.dumps({"root": str(root.resolve()), "files": listing, "options": options,
                                     "version": 1}, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"{kind}-{root.name}-{key}.npz"


def load_wav_folder(root: Path, cache_dir=".cache", clip_seconds: float = 1.0, resample: bool = False,
                    features: dict | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1,
                    progress: bool = True) -> SequenceData:
    """Speech Commands layout -> log-mel sequences (cached under ``cache_dir``)."""
    kind, labels, files = _files_by_label(root)
    if kind != "wav":
        raise UserError(f"{root} holds .{kind} files, not .wav: convert the recordings to WAV "
                        f"(e.g. sox in.{kind} out.wav), one sub-folder per label")
    check_fractions(str(root), val_fraction, test_fraction)
    config = feature_config(str(root), {} if features is None else features, FeatureConfig())
    n = clip_samples(str(root), clip_seconds, config)
    opts = {"clip_seconds": clip_seconds, "resample": resample, "features": config.to_dict()}
    cache = _cache_file(cache_dir, "wav", root, files, opts)
    flat = [(label, p) for label, fs in enumerate(files) for p in fs]
    X = None
    if cache.is_file():
        try:
            X = read_npz(cache).get("X")
        except NpzUnreadable as e:
            print(f"warning: feature cache {cache} {e}; computing the features again", file=sys.stderr)
        if X is not None and X.shape != (len(flat), config.num_frames(n), config.n_mels):
            print(f"warning: feature cache {cache} holds features of shape {X.shape}, not "
                  f"{(len(flat), config.num_frames(n), config.n_mels)}; computing them again", file=sys.stderr)
            X = None
    if X is None:
        it = flat
        if progress:
            try:
                from tqdm import tqdm
                it = tqdm(flat, desc=f"{root.name}: features", unit="file", file=sys.stderr)
            except ImportError:
                pass
        X = np.empty((len(flat), config.num_frames(n), config.n_mels), dtype=np.float32)
        for i, (_, p) in enumerate(it):
            try:
                audio, _ = read_wav(p, config.sample_rate, resample_to_rate=resample)
            except WrongSampleRate as e:
                raise UserError(f"{e}; or let training resample every file: --set data.resample=true") from None
            if len(audio) == 0:  # (a header with no frames: it would train as silence under its label)
                raise UserError(f"{p} holds no audio samples (a WAV header only): re-record or remove it")
            clip = np.zeros(n, dtype=np.float32)
            clip[:min(n, len(audio))] = audio[:n]
            X[i] = log_mel(clip, config)
        with atomic_path(cache) as tmp, open(tmp, "wb") as f:
            np.savez(f, X=X)
    y = np.array([label for label, _ in flat], dtype=np.int64)
    groups = [group_of(p) for _, p in flat]
    info = {"source": f"WAV folder {root}", "synthetic": False, "features": config.to_dict(),
            "sample_rate_hz": config.sample_rate, "clip_seconds": clip_seconds,
            "split_by": "speaker (<speaker>_nohash_ prefix) or file"}
    return _split_arrays(root.name, labels, X, y, groups, val_fraction, test_fraction, info)


def read_csv_recording(path: Path) -> np.ndarray:
    """One recording ``[T, C]`` float32; the first row may be a header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not a header
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except UnicodeDecodeError as e:
        raise UserError(f"cannot read {path}: it is not UTF-8 text ({e.reason} at byte {e.start}): "
                        f"save it as UTF-8 (plain ASCII numbers are)") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}: check the file's permissions or restore it") from None
    if rows:
        try:
            [float(c) for c in rows[0]]
        except ValueError:
            rows = rows[1:]  # header
    if not rows:
        raise UserError(f"{path} holds no data rows: each CSV must be one recording, one row per time step")
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise UserError(f"{path} row {i + 1} has {len(r)} columns, the first has {width}: every row needs one value per channel")
    try:
        data = np.array([[float(c) for c in r] for r in rows], dtype=np.float32)
    except ValueError as e:
        cells = [c for r in rows[:5] for c in r]
        other = next((name for sep, name in ((";", "semicolons"), ("\t", "tabs")) if any(sep in c for c in cells)), None)
        if other:  # (a spreadsheet saved in a locale whose list separator is not the comma)
            raise UserError(f"{path} separates its columns with {other}: save it with commas between values "
                            f"and a point as the decimal mark") from None
        raise UserError(f"{path} has a non-numeric value ({e}): CSV cells must be numbers") from None
    if not np.all(np.isfinite(data)):
        raise UserError(f"{path} contains NaN or infinite values: clean the recording")
    return data


def _default_window(recs: list) -> int:
    """The shortest recording's length (every recording gives a window), refused when that recording is
    under half the median length: a truncated file would silently make every window that short."""
    lengths = [len(r) for _, _, r in recs]
    typical = int(np.median(lengths))
    shortest = int(np.argmin(lengths))
    if lengths[shortest] < typical / 2:
        usable = min(n for n in lengths if n >= typical / 2)
        raise UserError(f"CSV recording {recs[shortest][1]} has only {lengths[shortest]} row(s), under half the median "
                        f"length of {typical}, and the default window is the shortest recording: fix or remove that "
                        f"recording, or set data.window (e.g. {usable}; shorter recordings are then skipped)")
    return lengths[shortest]


def _check_window(labels: list[str], recs: list, window: int) -> None:
    """Every label needs a recording of at least ``window`` rows: a class without examples cannot be learnt."""
    longest = {name: max(len(r) for label, _, r in recs if label == k) for k, name in enumerate(labels)}
    if max(longest.values()) < window:
        raise UserError(f"no CSV recording reaches the window of {window} rows (the longest has "
                        f"{max(longest.values())}): choose data.window={max(longest.values())} or less")
    empty = [name for name, n in longest.items() if n < window]
    if empty:
        raise UserError(f"no CSV recording of label(s) {', '.join(empty)} reaches the window of {window} rows, so "
                        f"those classes would have no examples: choose data.window={min(longest.values())} or less, "
                        f"or add longer recordings of {', '.join(empty)}")


def load_csv_folder(root: Path, window: int | None = None, hop: int | None = None,
                    val_fraction: float = 0.1, test_fraction: float = 0.1) -> SequenceData:
    """One sub-folder per label, one CSV recording per file -> fixed-length windows."""
    kind, labels, files = _files_by_label(root)
    if kind != "csv":
        raise UserError(f"{root} holds .{kind} files, not .csv: give one sub-folder per label with one CSV "
                        f"recording per file (a header row, one column per channel)")
    recs = [(label, p, read_csv_recording(p)) for label, fs in enumerate(files) for p in fs]
    channels = {r.shape[1] for _, _, r in recs}
    if len(channels) > 1:
        counts = {c: next(str(p) for _, p, r in recs if r.shape[1] == c) for c in sorted(channels)}
        raise UserError(f"CSV recordings have different channel counts ({', '.join(f'{c} in {p}' for c, p in counts.items())}): all must have the same columns")
    check_fractions(str(root), val_fraction, test_fraction)
    window = _default_window(recs) if window is None else check_range(str(root), "window", window, window >= 1, "1 or more rows")
    hop = max(1, window // 2) if hop is None else check_range(str(root), "hop", hop, hop >= 1, "1 or more rows")
    _check_window(labels, recs, window)
    X, y, groups, skipped = [], [], [], 0
    for label, p, r in recs:
        if len(r) < window:
            skipped += 1
            continue
        for s in range(0, len(r) - window + 1, hop):
            X.append(r[s:s + window])
            y.append(label)
            groups.append(group_of(p))
    if skipped:
        print(f"warning: {skipped} CSV recording(s) shorter than the window of {window} rows were skipped", file=sys.stderr)
    X = np.stack(X)
    info = {"source": f"CSV folder {root}", "synthetic": False, "window": window, "hop": hop,
            "split_by": "recording (file name, or <subject>_nohash_ prefix)"}
    return _split_arrays(root.name, labels, X, np.array(y), groups, val_fraction, test_fraction, info)


# -- .npz -------------------------------------------------------------------------------------
def load_npz(path: Path, val_fraction: float = 0.1, test_fraction: float = 0.1) -> SequenceData:
    """``X [N, T, C]``, ``y [N]``, optional ``class_names [K]`` and ``groups [N]``."""
    check_fractions(str(path), val_fraction, test_fraction)
    try:
        arrays = read_npz(path)
    except NpzUnreadable as e:
        raise UserError(f"{path} {e}: write it with numpy.savez(path, X=..., y=...), plain numeric arrays") from None
    for key in ("X", "y"):
        if key not in arrays:
            raise UserError(f"{path} has no array {key!r} (found {', '.join(arrays) or 'none'}): save X [N, T, C] and y [N]")
    X, y = arrays["X"], arrays["y"]
    if X.ndim != 3 or not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise UserError(f"{path}: X must be a real numeric array [N, T, C], got shape {X.shape} dtype {X.dtype}"
                        f"{' (complex: save the real and imaginary parts as channels)' if np.iscomplexobj(X) else ''}")
    if y.ndim != 1 or len(y) != len(X):
        raise UserError(f"{path}: y must be [N] with N = {len(X)} (one label per sequence), got shape {y.shape}")
    if len(X) < 3:
        raise UserError(f"{path} holds only {len(X)} example(s): at least 3 are needed so that train, val and test "
                        "each get one: add data")
    if X.shape[1] < 1:
        raise UserError(f"{path}: X has no time steps (shape {X.shape}): each sequence of X [N, T, C] needs at least 1 step")
    if X.shape[2] < 1:
        raise UserError(f"{path}: X has no channels (shape {X.shape}): X [N, T, C] needs at least one channel")
    if not np.all(np.isfinite(X)):
        raise UserError(f"{path}: X contains NaN or infinite values: drop or fill those examples before saving")
    with np.errstate(over="ignore"):  # (refused below, with one line)
        X = X.astype(np.float32)  # what training reads
    if not np.all(np.isfinite(X)):
        raise UserError(f"{path}: X holds values beyond float32's range (about 3.4e38), which training computes in: "
                        f"rescale those channels before saving")
    for key, size in (("class_names", "K"), ("groups", "N")):
        if key in arrays and arrays[key].ndim != 1:
            raise UserError(f"{path}: {key} must be a 1-d array [{size}], got shape {arrays[key].shape}: "
                            f"save it as a list, e.g. {key}=np.array({['a', 'b'] if key == 'class_names' else [0, 0, 1]})")
    class_names, y = _npz_labels(path, y, arrays.get("class_names"))
    if "groups" in arrays:
        groups = [str(g) for g in arrays["groups"]]
        if len(groups) != len(X):
            raise UserError(f"{path}: groups must be [N] with N = {len(X)}, got {len(groups)}")
        split_by = "groups array"
    else:
        groups = [f"#{i}" for i in range(len(X))]
        split_by = "example (no groups array: examples of one subject may be in several splits)"
    info = {"source": f"npz file {path}", "synthetic": False, "split_by": split_by}
    return _split_arrays(path.stem, class_names, X, y.astype(np.int64), groups,
                         val_fraction, test_fraction, info, groups_from=f"the groups array of {path}")


def _listed(names: list[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "")


def _npz_labels(path: Path, y: np.ndarray, class_names: np.ndarray | None) -> tuple[list[str], np.ndarray]:
    """Class names and labels ``0..K-1`` from ``y``: integers that use every class ``0..K-1`` (named by
    ``class_names`` when given), or strings (in the order of ``class_names`` when given, else sorted);
    at least two classes."""
    if np.issubdtype(y.dtype, np.integer):
        values = np.unique(y)
        if values[0] != 0 or values[-1] != len(values) - 1:
            raise UserError(f"{path}: integer labels y must be 0..K-1 with every class used, found {len(values)} "
                            f"distinct values from {values[0]} to {values[-1]}: map them with "
                            "y = np.unique(y, return_inverse=True)[1], or save string labels")
        names = [str(c) for c in class_names] if class_names is not None else [str(v) for v in values]
        if len(names) != len(values):
            raise UserError(f"{path}: y has {len(values)} classes (labels 0..{len(values) - 1}) but class_names lists "
                            f"{len(names)}: give one name per class")
    elif y.dtype.kind in "US":
        found = [str(c) for c in np.unique(y)]
        names = found if class_names is None else [str(c) for c in class_names]
        if sorted(names) != found or len(set(names)) != len(names):
            raise UserError(f"{path}: class_names ({_listed(names)}) must name each label of y once; y holds "
                            f"{_listed(found)}")
        index = {name: i for i, name in enumerate(names)}
        y = np.array([index[str(v)] for v in y], np.int64)
    else:
        raise UserError(f"{path}: y must hold integer labels or strings, got dtype {y.dtype}")
    if len(names) < 2:
        raise UserError(f"{path}: y holds only one label ({names[0]}): a classifier needs at least two classes")
    return names, y


def load_path(path: str | Path, cache_dir=".cache", seed: int = 0, **options) -> SequenceData:
    """Dispatch on what ``path`` is: a ``.npz`` file, or a folder of WAV / CSV files per label.

    ``seed`` is accepted for the loader contract; splits are by hash and do not depend on it.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise UserError(f"{path} is a file but not a .npz: pass a .npz (X, y) or a folder of label sub-folders")
        return call_loader(load_npz, str(path), options, path)
    if not path.is_dir():
        raise UserError(f"data path {path} does not exist: give an existing data folder or .npz file")
    kind = _files_by_label(path)[0]
    if kind == "wav":
        return call_loader(load_wav_folder, str(path), options, path, cache_dir=cache_dir)
    return call_loader(load_csv_folder, str(path), options, path)
