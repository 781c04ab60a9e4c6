"""Turning a stream of frames into detections: windowed streaming + posterior smoothing.

The models are trained on fixed windows (1 s of audio, 2 s of IMU) that start from a zero state,
so a continuous stream is decoded as ``lanes`` staggered windows: lane ``i`` restarts every
``window`` frames, offset by ``i * window / lanes``; a lane that completes its window yields the
posterior that ``predict`` gives on that window (same math, computed incrementally: every frame
costs ``lanes`` streaming steps, no recomputation). The posteriors, one every ``window/lanes``
frames, are then smoothed (moving average over ``smooth`` of them) and a detection is reported
when a non-ignored class's smoothed posterior reaches ``threshold``, at most once per
``refractory`` frames for the same class (the usual keyword-spotting decoder, Chen et al. 2014).
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from runtime.errors import UserError


def softmax(scores: np.ndarray) -> np.ndarray:
    """Posteriors from logits along the last axis (numerically stable)."""
    z = np.asarray(scores, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class WindowedStream:
    """Staggered fixed-length windows over a stream of frames, each decoded by its own stepper."""

    def __init__(self, model, window: int, lanes: int = 4):
        if window < 1 or lanes < 1 or lanes > window:
            raise UserError(f"invalid windowing: window={window} frames, lanes={lanes} (need 1 <= lanes <= window)")
        self.window, self.lanes = int(window), int(lanes)
        self.steppers = [model.stream() for _ in range(self.lanes)]
        self.frame = 0

    @property
    def hop(self) -> int:
        return max(1, self.window // self.lanes)

    def push(self, frame) -> list[tuple[int, np.ndarray]]:
        """One raw feature frame ``[C]`` in; ``(end frame index, posterior [K])`` for each window it completes."""
        out = []
        t = self.frame
        for i, s in enumerate(self.steppers):
            start = i * self.hop
            if t < start:
                continue  # this lane's first window has not begun
            pos = (t - start) % self.window
            if pos == 0:
                s.reset()
            scores = s.step(frame)
            if pos == self.window - 1:
                out.append((t, softmax(scores)))
        self.frame += 1
        return out


@dataclasses.dataclass
class Detection:
    frame: int  # index of the frame that completed the deciding window
    label: str
    index: int
    confidence: float


class Detector:
    """Moving-average smoothing of posteriors, threshold and per-class refractory period."""

    def __init__(self, class_names, threshold: float = 0.7, smooth: int = 3, refractory: int = 100,
                 ignore=()):
        if not 0.0 < threshold <= 1.0 or smooth < 1 or refractory < 0:
            raise UserError(f"invalid detector settings: threshold={threshold} (0..1], smooth={smooth} (>=1), "
                            f"refractory={refractory} (>=0)")
        self.class_names = list(class_names)
        unknown = set(ignore) - set(self.class_names)
        if unknown:
            raise UserError(f"--ignore names unknown class(es) {sorted(unknown)}: the classes are {self.class_names}")
        self.ignore = {self.class_names.index(c) for c in ignore}
        self.threshold, self.refractory = float(threshold), int(refractory)
        self.history: collections.deque = collections.deque(maxlen=int(smooth))
        self.last: dict[int, int] = {}

    def update(self, frame: int, posterior: np.ndarray) -> Detection | None:
        """Add one posterior; return a detection if it fires now."""
        self.history.append(np.asarray(posterior, np.float64))
        smoothed = np.mean(self.history, axis=0)
        k = int(np.argmax(smoothed))
        p = float(smoothed[k])
        if k in self.ignore or p < self.threshold:
            return None
        if k in self.last and frame - self.last[k] < self.refractory:
            return None
        self.last[k] = frame
        return Detection(frame, self.class_names[k], k, p)


def score(detections: list[tuple[str, float]], events: list[dict], duration_s: float,
          tolerance_s: float = 1.0, background=("_unknown_", "_silence_")) -> dict:
    """Detection rate and false alarms per minute of ``(label, time_s)`` reports against ground truth.

    ``events``: ``{"label", "start_s", "end_s"}`` per spoken word (a ``training.data.kws_stream``
    sidecar). A keyword is found when its label is reported within ``[start_s, end_s + tolerance_s]``
    (first report only); every other report - wrong label, no word there, a repeat, or a report
    during a background word - is a false alarm.
    """
    keywords = [e for e in events if e["label"] not in background]
    found = [False] * len(keywords)
    false_alarms = []
    for label, t in sorted(detections, key=lambda d: d[1]):
        hit = next((i for i, e in enumerate(keywords) if not found[i] and e["label"] == label
                    and e["start_s"] <= t <= e["end_s"] + tolerance_s), None)
        if hit is None:
            false_alarms.append((label, t))
        else:
            found[hit] = True
    minutes = max(duration_s, 1e-9) / 60.0
    return {"keywords": len(keywords), "found": int(sum(found)),
            "detection_rate": float(np.mean(found)) if keywords else float("nan"),
            "false_alarms": len(false_alarms), "false_alarms_per_min": len(false_alarms) / minutes,
            "missed": [e["label"] + f"@{e['start_s']:.2f}" for e, f in zip(keywords, found) if not f],
            "false_alarm_reports": [f"{lab}@{t:.2f}" for lab, t in false_alarms], "duration_s": duration_s}
