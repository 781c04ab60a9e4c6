"""IMU channels computed from the raw accelerometer + gyroscope samples (numpy only).

A dev-fold experiment (docs/watch-experiments.md, "A rotation-invariant front-end"), not the default:
``python -m training.cv --dev --set data.features=magnitude``. Per sample ``t`` of a recording
``x[t, 0:6]`` (accelerometer ``a = x[t, 0:3]``, gyroscope ``w = x[t, 3:6]``)::

    raw        x[t, 0:6]                   the six channels as recorded (the default)
    magnitude  x[t, 0:6], |a|, |w|          + the Euclidean norms, which do not change when the
                                            watch sits rotated on the wrist

Each output sample depends on its own input sample only, so streaming and whole windows see the
same features. Training augments the six raw channels (rotations and mirroring leave the norms as they
are; the ``tempo`` option does not rescale ``|w|``). A model trained with ``magnitude`` takes 8 channels: whoever feeds it (a device, a
CSV for ``python -m runtime sense``) computes them with ``imu_features``.
"""

from __future__ import annotations

import numpy as np

from runtime.errors import UserError

FEATURES = ("raw", "magnitude")


def check_features(features: str) -> None:
    if features not in FEATURES:
        raise UserError(f"features = {features!r}: choose one of {', '.join(FEATURES)}")


def feature_channels(features: str) -> list[str]:
    """Names of the channels ``features`` adds after the six raw ones."""
    check_features(features)
    return ["acc_norm", "gyro_norm"] if features == "magnitude" else []


def imu_features(rec: np.ndarray, features: str = "raw") -> np.ndarray:
    """The model input ``[T, 6 + k]`` (float32) of a raw recording ``[T, 6]``."""
    check_features(features)
    rec = np.asarray(rec, dtype=np.float32)
    if features == "raw":
        return rec
    norms = [np.sqrt(np.sum(np.square(rec[:, i:i + 3], dtype=np.float64), axis=1)) for i in (0, 3)]
    return np.concatenate([rec, np.stack(norms, 1).astype(np.float32)], 1)
