"""The held-out inputs every cell sees, and the float PyTorch reference on them.

Rows: first the artifact folder's ``golden.npz`` (what export verified against), then, when the
task's data can be loaded here, the test split (the task accuracy the model was trained for).
The reference is computed straight from the training checkpoint with the checkpoint's own
normalization - NOT through ``runtime`` and NOT from the manifest's ``preprocess`` - so a
mistake in the manifest or in the runtime's plumbing shows up in every cell instead of
cancelling out.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from runtime.errors import UserError
from runtime.manifest import Manifest


@dataclasses.dataclass
class HeldOut:
    x_raw: np.ndarray  # [N, T, C] raw features, as a user passes them
    y: np.ndarray  # [N] labels; forecast: [N, K] true future frames in the model's normalized space
    reference: np.ndarray  # [N, K] float PyTorch scores (live, from the checkpoint)
    golden_rows: int  # the first golden_rows rows come from golden.npz
    golden_scores: np.ndarray  # [G, K] scores stored in golden.npz at export time
    golden_stream: np.ndarray | None  # [G, T, K] per-step scores stored in golden.npz
    reference_stream: np.ndarray  # [S, T, K] live PyTorch per-step scores on the sample rows
    sample_rows: int  # the first sample_rows rows (golden + test rows spread over the split) feed the slow cells
    sources: dict  # {"golden": G, "test": N - G, "sample": S, "test_note": why no test split, if none}
    head: str = "classify"  # "forecast": cells are judged by regression metrics (runtime/tolerances.py)

    @property
    def accuracy_rows(self) -> slice:
        """Rows task accuracy is measured on: the test split when present, else the golden set."""
        return slice(self.golden_rows, None) if len(self.y) > self.golden_rows else slice(0, self.golden_rows)

    def rows(self, which: str) -> slice:
        """``golden``: golden.npz rows; ``sample``: golden + test rows spread evenly over the split
        (``spread_first``; for streaming and emulated devices, which are slow per row); ``all``: every row."""
        if which == "golden":
            return slice(0, self.golden_rows)
        if which == "sample":
            return slice(0, self.sample_rows)
        return slice(0, len(self.y))


def _load_golden(manifest: Manifest) -> dict:
    return manifest.golden("x_raw", "y", "scores")  # sha256-verified; damaged or lacking: one line


def _test_split(meta: dict, max_test: int | None) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The task's test split rebuilt from the checkpoint's config, or (None, None, why not)."""
    if max_test == 0:
        return None, None, "test split not requested"
    try:
        from training.data import load_task_of
    except ImportError as e:
        return None, None, f"training package not importable ({e})"
    try:
        data = load_task_of(meta)
    except UserError as e:
        return None, None, f"test split unavailable: {e}"
    X, y = data.X_test, data.y_test
    if max_test is not None and len(X) > max_test:
        X, y = X[:max_test], y[:max_test]
    return X, y, ""


SAMPLE_TEST_ROWS = 120  # test rows added to the golden rows for the slow cells (streaming, emulators)


def spread_first(n: int, k: int) -> np.ndarray:
    """A permutation of ``range(n)`` whose first ``min(k, n)`` entries are evenly spaced over the
    rows (in order), followed by the rest in order.

    The test split lists each recording's overlapping windows one after another, so its first rows
    cover a few recordings only (on ``watch``, the first 120 test windows hold 3 of the 7 classes).
    Putting an evenly spaced selection first makes the sample that the slow cells see (streaming,
    emulated devices) stand for the whole split; the full-split cells see every row either way."""
    k = max(0, min(int(k), n))
    first = np.unique(np.linspace(0, n - 1, k).round().astype(np.int64)) if k else np.zeros(0, np.int64)
    rest = np.setdiff1d(np.arange(n), first, assume_unique=True)
    return np.concatenate([first, rest])


def load_heldout(manifest: Manifest, test_split: bool = True, max_test: int | None = None,
                 sample_test_rows: int = SAMPLE_TEST_ROWS) -> tuple[HeldOut, object]:
    """(held-out inputs with the live reference, the PyTorch model) for an artifact folder."""
    import torch
    from training.checkpoint import load_model

    golden = _load_golden(manifest)
    model, meta = load_model(manifest.checkpoint_path())  # sha256-verified against the manifest
    mean = np.asarray(meta["input_mean"], np.float32)
    std = np.asarray(meta["input_std"], np.float32)
    xg = np.asarray(golden["x_raw"], np.float32)
    head = getattr(model.spec, "head", "classify")
    yg = np.asarray(golden["y"], np.float32 if head == "forecast" else np.int64)
    note = ""
    Xt = yt = None
    if test_split:
        Xt, yt, note = _test_split(meta, max_test)
    else:
        note = "test split not requested"
    if Xt is not None and head == "forecast":  # raw future frames -> the space golden.npz and the model use
        from training.forecast import target_space
        yt = target_space(yt, mean, std)
    if Xt is not None and Xt.shape[1:] != xg.shape[1:]:
        note = f"test split windows {Xt.shape[1:]} differ from golden {xg.shape[1:]}: golden only"
        Xt = yt = None
    if Xt is not None:  # the sample's test rows spread over the whole split
        order = spread_first(len(Xt), sample_test_rows)
        Xt, yt = Xt[order], yt[order]
    x_raw = xg if Xt is None else np.concatenate([xg, Xt.astype(np.float32)])
    y = yg if yt is None else np.concatenate([yg, yt])

    def norm(x):
        return torch.from_numpy(((x - mean) / std).astype(np.float32))
    with torch.no_grad():
        reference = np.concatenate([model(norm(x_raw[i:i + 256])).numpy() for i in range(0, len(x_raw), 256)])
        sample = len(xg) + min(int(sample_test_rows), len(x_raw) - len(xg))
        reference_stream = model.stream(norm(x_raw[:sample])).numpy()
    held = HeldOut(x_raw=x_raw, y=y, reference=reference.astype(np.float32), golden_rows=len(xg),
                   golden_scores=np.asarray(golden["scores"], np.float32),
                   golden_stream=np.asarray(golden["stream_scores"], np.float32) if "stream_scores" in golden else None,
                   reference_stream=reference_stream.astype(np.float32), sample_rows=sample,
                   sources={"golden": len(xg), "test": len(x_raw) - len(xg), "sample": sample, "test_note": note},
                   head=head)
    return held, model
