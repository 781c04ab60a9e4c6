"""A work folder for builds that are measured, not kept."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path


@contextlib.contextmanager
def work_folder(work_dir, prefix: str):
    """The caller's ``work_dir`` (created if missing, and kept), or a temporary folder named
    ``<prefix>*`` that is removed when the block ends, whatever happened in it."""
    if work_dir:
        path = Path(work_dir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)
