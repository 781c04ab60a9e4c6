"""Read a pickled ``.npy`` object array without trusting pickle.

``np.load(allow_pickle=True)`` would run any code the file asks for. This reader unpickles with
an allow-list: numpy arrays, dtypes, scalars and plain containers, nothing else.

It is not a sandbox for hostile files: numpy's own ``dtype`` / ``ndarray`` state setters accept
forged fields (an object dtype with its has-objects flag cleared crashes the process; security
audit). So its one caller pins the file: it hashes the bytes, compares the sha256 with the known
dataset's, and hands this reader those same bytes (``data=``), never the path again.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from runtime.errors import UserError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # how pickle protocol 2 stores bytes; pure, no side effects
}


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            mod = __import__(module, fromlist=[name])
            return getattr(mod, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_object_npy(path: str | Path, data: bytes | None = None):
    """Load a 0-d object ``.npy`` (a pickled dict) with the allow-list unpickler; from ``data`` (the
    file's bytes, already checked by the caller) when given, else from ``path``."""
    path = Path(path)
    try:
        with (io.BytesIO(data) if data is not None else open(path, "rb")) as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            if dtype != object:
                f.seek(0)
                return np.lib.format.read_array(f, allow_pickle=False)
            obj = _AllowListUnpickler(io.BufferedReader(f)).load()
    except (pickle.UnpicklingError, ValueError, EOFError, OSError) as e:
        raise UserError(f"cannot read {path}: {e}; reinstall the package that ships it") from None
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
        obj = obj.item()
    return obj
