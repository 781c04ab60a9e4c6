"""The dataset contract and the task registry."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from runtime.errors import UserError
from runtime.features import FeatureConfig


@dataclasses.dataclass
class SequenceData:
    """Windows ``X [N, T, C]`` (float32) with labels ``y [N]`` (int64), split three ways.

    No subject (watch) or voice (kws) appears in more than one split. A forecasting task
    (``head="forecast"``) has float32 targets ``y [N, horizon * C]`` in raw units instead, and
    ``class_names`` names each output (training/forecast.py). A sequence-labelling task
    (``head="frames"``) has one label per frame, ``y [N, T]`` int64 (training/frames.py).
    """

    name: str
    class_names: list[str]
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    info: dict = dataclasses.field(default_factory=dict)
    head: str = "classify"  # "classify" | "forecast" | "frames"
    groups_train: np.ndarray | None = None  # who recorded each training window (watch: the subject), if known
    recordings_test: np.ndarray | None = None  # the source recording of each test window (watch: its index in the file), if known

    def __post_init__(self):
        for split in ("train", "val", "test"):
            X, y = getattr(self, f"X_{split}"), getattr(self, f"y_{split}")
            if len(X) == 0:
                raise UserError(f"dataset {self.name!r} has no {split} examples: provide more data")
            if X.ndim != 3 or len(X) != len(y):
                raise UserError(f"dataset {self.name!r}: {split} must be X [N, T, C] with N labels, got {X.shape} and {y.shape}")
            setattr(self, f"X_{split}", np.ascontiguousarray(X, dtype=np.float32))
            if self.head == "forecast":
                y = np.ascontiguousarray(y, dtype=np.float32)
                if y.ndim != 2 or y.shape[1] != len(self.class_names):
                    raise UserError(f"dataset {self.name!r}: {split} forecast targets must be [N, {len(self.class_names)}], got {y.shape}")
                setattr(self, f"y_{split}", y)
            elif self.head == "frames":
                y = np.asarray(y, dtype=np.int64)
                if y.shape != X.shape[:2]:
                    raise UserError(f"dataset {self.name!r}: {split} frame labels must be [N, T] = {X.shape[:2]}, got {y.shape}")
                setattr(self, f"y_{split}", y)
            else:
                setattr(self, f"y_{split}", np.asarray(y, dtype=np.int64))
        if self.groups_train is not None:
            self.groups_train = np.asarray(self.groups_train, dtype=np.int64)
            if self.groups_train.shape != (len(self.X_train),):
                raise UserError(f"dataset {self.name!r}: groups_train must hold one group per training window "
                                f"({len(self.X_train)}), got shape {self.groups_train.shape}")
        if self.recordings_test is not None:
            self.recordings_test = np.asarray(self.recordings_test, dtype=np.int64)
            if self.recordings_test.shape != (len(self.X_test),):
                raise UserError(f"dataset {self.name!r}: recordings_test must name one recording per test window "
                                f"({len(self.X_test)}), got shape {self.recordings_test.shape}")

    @property
    def input_size(self) -> int:
        return int(self.X_train.shape[2])

    @property
    def horizon(self) -> int:
        """Forecast frames per window (0 for classification)."""
        return len(self.class_names) // self.input_size if self.head == "forecast" else 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def normalization(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std of the training split (what the model expects to be removed)."""
        flat = self.X_train.reshape(-1, self.input_size).astype(np.float64)
        mean, std = flat.mean(0), flat.std(0)
        std[std <= 1e-6 * np.abs(flat).max(0)] = 1.0  # constant (to float32's rounding of its values): left unscaled
        return mean.astype(np.float32), std.astype(np.float32)


TASKS = ("watch", "kws", "fixture", "watch-forecast", "fixture-forecast", "watch-frames", "fixture-frames")


def check_option(where: str, name: str, value, default):
    """A ``[data]`` option's value, checked against the type of its default (a pure function).

    bool, int, float and str must match (an int is accepted as a float); a list or tuple must hold
    values of its default's element type; options whose default is None or a table pass through.
    Raises one clear :class:`UserError` instead of the TypeError deep inside a loader."""
    def fail(kind: str):
        raise UserError(f"option {name}={value!r} of {where} must be {kind}: "
                        f"fix it in the [data] table or the --set data.{name}=... override")
    if isinstance(default, bool):
        return value if isinstance(value, bool) else fail("true or false")
    if isinstance(default, int):
        return value if isinstance(value, int) and not isinstance(value, bool) else fail("an integer")
    if isinstance(default, float):
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else fail("a number")
    if isinstance(default, str):
        return value if isinstance(value, str) else fail("a string")
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            fail("a list such as [1, 2]")
        if default:
            value = [check_option(where, name, v, default[0]) for v in value]
        return type(default)(value)
    return value


def check_range(where: str, name: str, value, ok: bool, want: str):
    """``value`` when ``ok``, else one clear :class:`UserError` naming the valid range ``want``."""
    if not ok:
        raise UserError(f"option {name}={value!r} of {where} is out of range: choose {want} "
                        f"(in the [data] table or with --set data.{name}=...)")
    return value


def check_fractions(where: str, val_fraction: float, test_fraction: float) -> None:
    """The shares held out for validation and test: each above 0 (a split needs a group) and below 1,
    and together below 1."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        check_range(where, name, value, 0 < value < 1,
                    "a fraction above 0 and below 1, e.g. 0.1 (each split holds at least one group)")
    if val_fraction + test_fraction >= 1:
        raise UserError(f"val_fraction={val_fraction} and test_fraction={test_fraction} of {where} leave no "
                        f"training data: choose fractions whose sum is below 1")


def clip_samples(where: str, clip_seconds: float, config: FeatureConfig) -> int:
    """Samples in a clip of ``clip_seconds``, which must hold at least one feature frame."""
    shortest = config.win / config.sample_rate
    check_range(where, "clip_seconds", clip_seconds, clip_seconds >= shortest,
                f"a length of at least {shortest:g} s (one {config.win}-sample feature frame)")
    return int(round(clip_seconds * config.sample_rate))


def feature_config(where: str, features, default: FeatureConfig) -> FeatureConfig:
    """``default`` with the ``features`` table's values (``{hop = 320}``), each checked like an option:
    a key FeatureConfig lacks or a value of the wrong type is one clear error naming the valid keys."""
    base = default.to_dict()
    if not isinstance(features, dict):
        raise UserError(f"option features={features!r} of {where} must be a table such as {{hop = 320}} "
                        f"with keys from {', '.join(base)}")
    unknown = sorted(set(features) - set(base))
    if unknown:
        raise UserError(f"unknown feature option(s) {', '.join(map(str, unknown))} for {where}: "
                        f"valid keys of data.features are {', '.join(base)}")
    return FeatureConfig(**{**base, **{k: check_option(where, f"features.{k}", v, base[k]) for k, v in features.items()}})


def _typed_default(param):
    """A parameter's default, or for ``x: int | None = None`` a stand-in of the annotated type."""
    if param.default is None and isinstance(param.annotation, str):
        first = param.annotation.split("|")[0].strip()
        return {"int": 0, "float": 0.0, "bool": False, "str": ""}.get(first)
    return param.default


def call_loader(fn, where: str, options: dict, *args, **fixed) -> SequenceData:
    """``fn(*args, **fixed, **options)`` with ``options`` checked first: an unknown name or a value
    of the wrong type is one clear error naming the valid options, never a TypeError."""
    import inspect
    signature = inspect.signature(fn).parameters
    params = {n: p for n, p in signature.items()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in fixed}
    params = dict(list(params.items())[len(args):])  # positional arguments are not options
    takes_more = any(p.kind == p.VAR_KEYWORD for p in signature.values())
    unknown = sorted(set(options) - set(params))
    if unknown and not takes_more:  # a loader with **options checks the rest itself
        raise UserError(f"unknown option(s) {', '.join(unknown)} for {where}: valid options are {', '.join(params)}")
    checked = {k: check_option(where, k, v, _typed_default(params[k])) if k in params else v
               for k, v in options.items()}
    return fn(*args, **fixed, **checked)


def is_path_task(task: str) -> bool:
    """Whether ``task`` names a data path rather than a built-in task (built-in names hold no separator
    and no suffix)."""
    path = Path(task)
    return task not in TASKS and (path.exists() or "/" in task or os.sep in task or bool(path.suffix))


def same_task(a: str | None, b: str | None) -> bool:
    """Whether two task arguments name the same task: data paths compare as the folders or files they
    name (``data/csv/`` and ``./data/csv`` are one), built-in tasks by name."""
    if a == b:
        return True
    if a is None or b is None or not (is_path_task(a) and is_path_task(b)):
        return False
    return Path(a).resolve() == Path(b).resolve()


def load_task(task: str, cache_dir: str | Path = ".cache", seed: int = 0, **options) -> SequenceData:
    """Load a built-in task by name, or a user dataset from a path (folder or .npz)."""
    if task == "watch":
        from training.data.watch import load_watch
        return call_loader(load_watch, "task watch", options)
    if task == "kws":
        from training.data.kws import load_kws
        return call_loader(load_kws, "task kws", options, cache_dir=cache_dir, seed=seed)
    if task == "fixture":
        from training.data.fixture import load_fixture
        return call_loader(load_fixture, "task fixture", options, seed=seed)
    if task == "watch-forecast":
        from training.data.forecast import load_watch_forecast
        return call_loader(load_watch_forecast, "task watch-forecast", options)
    if task == "fixture-forecast":
        from training.data.forecast import load_fixture_forecast
        return call_loader(load_fixture_forecast, "task fixture-forecast", options, seed=seed)
    if task == "watch-frames":
        from training.data.frames import load_watch_frames
        return call_loader(load_watch_frames, "task watch-frames", options, seed=seed)
    if task == "fixture-frames":
        from training.data.frames import load_fixture_frames
        return call_loader(load_fixture_frames, "task fixture-frames", options, seed=seed)
    if is_path_task(task):
        from training.data.folder import load_path
        return load_path(Path(task), cache_dir=cache_dir, seed=seed, **options)
    raise UserError(f"unknown task {task!r}: use one of {', '.join(TASKS)}, or the path of a data folder or .npz file")


def load_task_of(meta: dict, task: str | None = None) -> SequenceData:
    """The dataset a checkpoint was trained on, rebuilt from its metadata: the task, the seed and
    the ``[data]`` options of its config (``task`` where the metadata names none)."""
    cfg = meta.get("config") or {}
    return load_task(meta.get("task") or cfg.get("task") or task, seed=int(cfg.get("seed", 0)), **(cfg.get("data") or {}))
