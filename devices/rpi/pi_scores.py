"""Runs ON the (emulated) Raspberry Pi: scores of chosen artifacts for given inputs, as an .npz.

    python3 pi_scores.py ARTIFACT_FOLDER INPUTS.npz OUT.npz NAME [NAME...]

INPUTS.npz holds ``x_raw`` [N, T, C] (raw features). For each manifest entry NAME the artifact is
loaded with ``runtime.load`` (sha256-verified) and run as a user would: whole-sequence entries give
``NAME`` = scores [N, K]; step entries are streamed frame by frame through one stepper in two
halves (so a state that is not reset between sequences would show) and give [N, T, K]. An entry
that fails to load or run is recorded as ``error:NAME`` (its one-line message) instead. ``NAME:ref``
runs a .tflite entry on LiteRT's reference kernels (``reference_kernels=True``) instead of its
optimized ones.
Needs numpy and the ``runtime`` package only (plus the backend libraries).
"""

from __future__ import annotations

import sys

import numpy as np


def scores_of(folder: str, name: str, x_raw: np.ndarray) -> np.ndarray:
    import runtime
    from runtime.backends.litert import artifact_and_options
    base, options = artifact_and_options(name)
    model = runtime.load(folder, artifact=base, **options)
    entry = model.manifest.by_name(base)
    if entry.get("kind") == "step":
        stepper = model.stream()
        half = max(1, len(x_raw) // 2)
        parts = [stepper.run(x_raw[:half])] + ([stepper.run(x_raw[half:])] if len(x_raw) > half else [])
        return np.concatenate(parts, axis=0).astype(np.float32)
    return np.asarray(model.predict(x_raw), np.float32)


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    folder, inputs, out, names = argv[0], argv[1], argv[2], argv[3:]
    x_raw = np.load(inputs, allow_pickle=False)["x_raw"]
    results = {}
    for name in names:
        try:
            results[name] = scores_of(folder, name, x_raw)
        except Exception as e:  # noqa: BLE001 - reported per artifact, judged by the caller
            results[f"error:{name}"] = np.array(f"{type(e).__name__}: {' '.join(str(e).split())}")
    np.savez(out, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
