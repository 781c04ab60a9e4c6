"""The user's cache folder (compiled C libraries, emulated Raspberry Pi roots): private to that user.

``$RNN_EDGE_CACHE``, else ``$XDG_CACHE_HOME/rnn-edge``, else ``~/.cache/rnn-edge``. What is cached
there is later loaded as code (a compiled ``.so``), so a folder another user could write to is
refused rather than trusted.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from runtime.errors import UserError


def cache_root() -> Path:
    """$RNN_EDGE_CACHE, else $XDG_CACHE_HOME/rnn-edge, else ~/.cache/rnn-edge."""
    if os.environ.get("RNN_EDGE_CACHE"):
        return Path(os.environ["RNN_EDGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rnn-edge"


def private_dir(*parts: str) -> Path:
    """``cache_root()/parts``, each missing folder on the way created with mode 0700; refused (one
    line) when it or the cache root belongs to another user or is writable by group or others."""
    path = cache_root().joinpath(*parts)
    try:
        # each missing level on its own: mkdir(parents=True) makes the parents with the umask's mode
        # (0775 under umask 002), which the check below would then refuse
        for level in reversed([q for q in (path, *path.parents) if not q.exists()]):
            level.mkdir(mode=0o700, exist_ok=True)
        if not path.is_dir():  # (a file of that name: mkdir(exist_ok=True) above only skips what exists)
            raise FileExistsError(errno.EEXIST, "a file is in the way")
    except OSError as e:
        raise UserError(f"cannot create the cache folder {path} ({e.strerror}): set RNN_EDGE_CACHE to a "
                        f"folder of your own") from None
    if hasattr(os, "geteuid"):
        for p in {path, cache_root()}:
            st = p.stat()
            if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise UserError(f"cache folder {p} is writable by other users (owner uid {st.st_uid}, mode "
                                f"{stat.S_IMODE(st.st_mode):o}): compiled code from it would not be trusted; "
                                f"run `chmod go-w {p}` if it is yours, or set RNN_EDGE_CACHE to a private folder")
    return path
