"""Reading an .npz file whole, never unpickling, with one reason when it cannot be read.

``np.load`` fails on a damaged archive with whichever error its layers raise (``BadZipFile`` when the
file is cut short, ``zlib.error`` or a CRC error for a flipped byte, a ``MemoryError`` when a damaged
header claims terabytes, ``ValueError`` for pickled members, raw ``bytes`` for a member that is not
an ``.npy``). :func:`read_npz` turns all of them into :class:`NpzUnreadable`, whose message completes
the sentence "<path> ...", so callers can say what to do: refuse the user's file, or rebuild a cache.
"""

from __future__ import annotations

import zipfile
import zlib

import numpy as np

ZIP_HEADERS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive


class NpzUnreadable(ValueError):
    """An .npz file that is not a whole archive of plain numpy arrays; ``str()`` says why."""


def read_npz(path) -> dict[str, np.ndarray]:
    """Every member of the .npz file at ``path`` as an array (read now; the file is closed after)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise NpzUnreadable(f"cannot be opened ({e.strerror})") from None
    if head not in ZIP_HEADERS:
        raise NpzUnreadable("is empty" if not head else "is not an .npz archive (no zip header)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:  # allow_pickle=False refusing an object array, or a malformed .npy header
        raise NpzUnreadable(f"holds pickled objects or a malformed array ({e})") from None
    except MemoryError:
        raise NpzUnreadable("declares an array larger than this machine's memory (a damaged header?)") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise NpzUnreadable(f"is cut short or damaged ({type(e).__name__}: {e})") from None
    odd = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))
    if odd:
        raise NpzUnreadable(f"has a member {odd[0]!r} that is not a numpy array (.npy)")
    return arrays
