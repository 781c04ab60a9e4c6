"""Write files so that a reader never sees half of one: write to a temporary name, fsync, rename."""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

#: A temporary of ours that nothing has modified for this long was left by a killed writer (one file
#: is written in seconds, an export folder fills in minutes): the next write of the same name removes it.
STALE_AFTER_S = 24 * 3600


def _newest_mtime(path: Path) -> float:
    """The latest modification time of ``path`` and, for a folder, of everything below it."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def remove_stale(folder: Path, name: str, suffixes: tuple[str, ...], stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove what killed writers of ``name`` left in ``folder``: entries ``.<name><suffix>`` (a glob
    each, e.g. ``.*.tmp``) that nothing has modified for ``stale_after_s`` seconds. Best effort (a
    temporary that cannot be removed stays, as before); returns what was removed."""
    now, removed = time.time(), []
    for suffix in suffixes:
        for path in Path(folder).glob(f".{glob.escape(name)}{suffix}"):
            try:
                if now - _newest_mtime(path) < stale_after_s:
                    continue  # (perhaps another writer's, still at work)
                if stat.S_ISDIR(path.lstat().st_mode):
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
            except OSError:
                continue
    return removed


def _temp_beside(path: Path, suffix: str, what: str = "") -> str:
    """A new empty temporary file beside ``path`` (its folder created first); one ``UserError`` line when
    ``path`` is a folder or its folder cannot be written."""
    from runtime.errors import UserError
    name = f"{what} {path}" if what else str(path)
    if path.is_dir():
        raise UserError(f"{name} is a folder: give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as e:
        raise UserError(f"cannot write {name}: {e.strerror or e} in {path.parent}; choose a writable folder") from None
    os.close(fd)
    return tmp


def check_writable(path: str | os.PathLike, what: str = "") -> None:
    """Fail now, before long work whose result would be lost, if ``path`` cannot be written (``what``: the
    option that named it, for the message)."""
    os.unlink(_temp_beside(Path(path), ".probe", what))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``.

    On an exception the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    remove_stale(path.parent, path.name, (".*.tmp",))  # a killed earlier write's temporary
    tmp = _temp_beside(path, ".tmp")
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it a plain file's mode
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- folders: swap a finished one in ---------------------------------------------------------------
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step with Linux renameat2(RENAME_EXCHANGE); False if unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def swap_in(new: Path, out_dir: Path) -> None:
    """Make ``new`` appear at ``out_dir``; the previous ``out_dir`` (if any) is removed after."""
    if not out_dir.exists():
        os.rename(new, out_dir)
    elif _exchange(new, out_dir):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the previous folder
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.rmdir(old)
        os.rename(out_dir, old)
        try:
            os.rename(new, out_dir)
        except OSError:
            os.rename(old, out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(out_dir.parent)
