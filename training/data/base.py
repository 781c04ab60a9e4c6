"""The dataset contract and the task registry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from runtime.errors import UserError


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
        std[std < 1e-6] = 1.0
        return mean.astype(np.float32), std.astype(np.float32)


TASKS = ("watch", "kws", "fixture", "watch-forecast", "fixture-forecast", "watch-frames", "fixture-frames")


def load_task(task: str, cache_dir: str | Path = ".cache", seed: int = 0, **options) -> SequenceData:
    """Load a built-in task by name, or a user dataset from a path (folder or .npz)."""
    if task == "watch":
        from training.data.watch import load_watch
        return load_watch(**options)
    if task == "kws":
        from training.data.kws import load_kws
        return load_kws(cache_dir=cache_dir, seed=seed, **options)
    if task == "fixture":
        from training.data.fixture import load_fixture
        return load_fixture(seed=seed, **options)
    if task == "watch-forecast":
        from training.data.forecast import load_watch_forecast
        return load_watch_forecast(**options)
    if task == "fixture-forecast":
        from training.data.forecast import load_fixture_forecast
        return load_fixture_forecast(seed=seed, **options)
    if task == "watch-frames":
        from training.data.frames import load_watch_frames
        return load_watch_frames(seed=seed, **options)
    if task == "fixture-frames":
        from training.data.frames import load_fixture_frames
        return load_fixture_frames(seed=seed, **options)
    path = Path(task)
    if path.exists():
        from training.data.folder import load_path
        return load_path(path, cache_dir=cache_dir, seed=seed, **options)
    raise UserError(f"unknown task {task!r}: use one of {', '.join(TASKS)}, or the path of a data folder or .npz file")
