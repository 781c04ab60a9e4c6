"""Reading an .npz (or .npy) file whole, never unpickling, with one reason when it cannot be read.

``np.load`` fails on a damaged archive with whichever error its layers raise (``BadZipFile`` when the
file is cut short, ``zlib.error`` or a CRC error for a flipped byte, a ``MemoryError`` when a damaged
header claims terabytes, ``ValueError`` for pickled members or a member shorter than its header says,
raw ``bytes`` for a member that is not an ``.npy``). :func:`read_npz` and :func:`read_npy` turn all of
them into :class:`NpzUnreadable`, whose message completes the sentence "<path> ...", so callers can
say what to do: refuse the user's file, or rebuild a cache.
"""

from __future__ import annotations

import contextlib
import zipfile
import zlib

import numpy as np

ZIP_HEADERS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive
NPY_HEADER = b"\x93NUM"  # the first bytes of numpy's magic string


class NpzUnreadable(ValueError):
    """An .npz (.npy) file that is not a whole archive of plain numpy arrays (one array); ``str()`` says why."""


def read_npz(path) -> dict[str, np.ndarray]:
    """Every member of the .npz file at ``path`` as an array (read now; the file is closed after)."""
    _check_head(path, ZIP_HEADERS, "an .npz archive (no zip header)")
    with _reasons():
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    odd = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))
    if odd:
        raise NpzUnreadable(f"has a member {odd[0]!r} that is not a numpy array (.npy)")
    return arrays


def read_npy(path) -> np.ndarray:
    """The array of the .npy file at ``path``, refused as :func:`read_npz` refuses an archive."""
    _check_head(path, (NPY_HEADER,), "an .npy file (no numpy header)")
    with _reasons(), open(path, "rb") as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _check_head(path, heads: tuple[bytes, ...], kind: str) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise NpzUnreadable(f"cannot be opened ({e.strerror})") from None
    if head not in heads:
        raise NpzUnreadable("is empty" if not head else f"is not {kind}")


@contextlib.contextmanager
def _reasons():
    """Whatever numpy's layers raise on a damaged file, as one NpzUnreadable."""
    try:
        yield
    except ValueError as e:
        if str(e).startswith(("EOF", "Failed to read all data")):  # numpy: fewer bytes than the header declares
            raise NpzUnreadable(f"is cut short or damaged ({e})") from None
        # allow_pickle=False refusing an object array, or a malformed .npy header
        raise NpzUnreadable(f"holds pickled objects or a malformed array ({e})") from None
    except MemoryError:
        raise NpzUnreadable("declares an array larger than this machine's memory (a damaged header?)") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise NpzUnreadable(f"is cut short or damaged ({type(e).__name__}: {e})") from None
