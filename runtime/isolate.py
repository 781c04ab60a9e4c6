"""Try a risky native load in a child process first, so a corrupt file cannot kill the caller.

Some inference libraries trust the bytes they are given: TFLite Micro builds its interpreter
from a flatbuffer without verifying it, and a shared library is native code. A damaged file can
then segfault inside the library and take the whole Python process with it. Files listed in a
manifest are sha256-verified before any library sees them; a *bare* file (no manifest, no hash)
is not, so ``runtime.load`` first loads it, and runs it once on zeros, in a child process
(``probe``). A child that dies by a signal becomes a one-line ``UserError``; only a file that
survives is loaded in-process. Costs one interpreter start (about a second) per bare load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from runtime.errors import UserError

PROBE_TIMEOUT_S = 120

# Backends whose library was seen to segfault on damaged files (docs/reliability.md): TFLite Micro
# (no flatbuffer verifier) and the C backend (a bare shared library is native code). ONNX Runtime
# and LiteRT verify what they parse and raised an error on every damaged file tried.
RISKY_BACKENDS = ("tflm", "c")


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def probe(backend: str, path, options: dict | None = None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Load ``path`` with ``backend`` and run it once on zeros in a child; raise ``UserError`` if that fails.

    A ``UserError`` in the child is passed on as is; a crash (signal), a hang (``timeout``) or any
    other failure is reported as a corrupt file.
    """
    path = Path(path).resolve()  # the child runs from the repository root
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    args = json.dumps({"backend": backend, "path": str(path), "options": options or {}}, default=str)
    try:
        p = subprocess.run([sys.executable, "-m", "runtime.isolate", args], capture_output=True, text=True,
                           timeout=timeout, env=env, cwd=root)
    except subprocess.TimeoutExpired:
        raise UserError(f"model file {path} hung {backend} for {timeout:.0f} s while loading: it is corrupted "
                        f"or not a model for it; re-export or restore it") from None
    if p.returncode == 0:
        return
    last = (p.stderr.strip().splitlines() or [""])[-1]
    if p.returncode < 0:
        raise UserError(f"model file {path} crashed {backend} while loading ({_signal_name(p.returncode)}): it is "
                        f"corrupted or not a model for it; re-export or restore it (this process was not affected)")
    if last.startswith("error: "):
        raise UserError(last[len("error: "):])
    raise UserError(f"model file {path} could not be loaded by {backend} (exit {p.returncode}: {last[:200]}): "
                    f"it is corrupted or not a model for it; re-export or restore it")


def _child(spec: dict) -> int:
    """The child's side: load, feed zeros of the declared shapes once, exit 0."""
    import numpy as np

    from runtime.backends import backend_class
    cls = backend_class(spec["backend"])
    backend = cls(Path(spec["path"]), entry=None, threads=1, **spec["options"])
    feeds = [np.zeros(tuple(d or 1 for d in t.shape), dtype=t.dtype) for t in backend.inputs]
    backend.run(feeds)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_child(json.loads(sys.argv[1])))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
