"""C backend: the generated C library (export/c), compiled on the host with gcc, called via ctypes.

The artifact is the generated ``<prefix>.c`` with its header ``<prefix>.h``. Both are read once,
checked against the manifest's sha256 (``sha256`` of the entry, ``c.file_sha256`` for the header),
copied into a private temporary folder and compiled from there, so what gcc sees is what was
checked. The library is cached per sha256 of (source, header, compiler command) in the user's
private cache folder (``runtime.cache``: refused when others can write to it), then loaded with ctypes.
An entry may carry libraries built for other machines (``c.prebuilt``: ``{machine: {file, sha256}}``,
file relative to the source, e.g. the aarch64 one a Raspberry Pi bundle ships,
``devices/rpi/cross.py``): on such a machine that library is checked against its sha256 and
loaded, and no compiler is needed.
The recurrent state lives in C structs owned here, one per batch row: the graph keeps state between
``run`` calls like TFLite variable tensors (manifest ``state.mode = "variables"``), and
``reset_variables`` zeroes it. ``kind="sequence"`` feeds ``x [B, T, C]`` and returns the scores
after the last frame; ``kind="step"`` feeds one frame ``[B, C]``. int8 libraries take int8 frames
and return int32 scores (the manifest's quant gives their scales). A bare ``lib<prefix>.so`` loads
too (prefix from the file name). Imports numpy and ctypes only.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from runtime.backends.base import Backend, Quant, TensorSpec
from runtime.cache import private_dir
from runtime.atomic import write_bytes
from runtime.errors import MissingDependency, UserError
from runtime.manifest import checked_bytes


def _compile_command(cc: str, precision: str, source="SOURCE", out="OUT") -> list[str]:
    """gcc's command line (with placeholder paths it is part of the cache key)."""
    return [cc, "-std=c99", "-O2", "-fPIC", "-shared", str(source), "-o", str(out)] + (["-lm"] if precision != "int8" else [])


def compile_shared(source: Path, out_so: Path, precision: str) -> Path:
    """gcc ``source`` -> ``out_so`` (written under a temporary name, then renamed)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise MissingDependency("a C compiler (gcc)", "sudo apt-get install gcc")
    out_so.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out_so.parent)
    os.close(fd)
    cmd = _compile_command(cc, precision, source, tmp)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            first = next((ln for ln in p.stderr.splitlines() if "error" in ln), p.stderr.strip()[:200])
            raise UserError(f"C model {source} does not compile ({first}): it is corrupted; re-export it")
        os.replace(tmp, out_so)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_so


def _prebuilt_here(entry: dict | None) -> dict | None:
    """The entry's ``c.prebuilt`` record for this machine ({file, sha256}), or None."""
    return (((entry or {}).get("c") or {}).get("prebuilt") or {}).get(platform.machine())


def prebuilt_library(source: Path, entry: dict | None) -> Path | None:
    """The entry's library prebuilt for this machine (``c.prebuilt[platform.machine()]``): its bytes
    checked against the sha256 and written to the user's private cache, which is what gets loaded
    (security audit: ctypes loaded the verified file by its path, which could be swapped after the
    check). None when the entry has none for this machine."""
    pre = _prebuilt_here(entry)
    if not pre:
        return None
    what = f"C library prebuilt for {platform.machine()}"
    path = Path(source).parent / pre.get("file", "")
    if not pre.get("sha256"):
        raise UserError(f"the manifest lists no sha256 for the {what} {path}: refusing to load an unverified file; re-export")
    data = checked_bytes(path, pre["sha256"], what)
    private = private_dir("c") / f"prebuilt-{pre['sha256'][:24]}-{Path(pre['file']).name}"
    if not private.is_file():
        write_bytes(private, data)
    return private


def compiled_library(source: Path, prefix: str, precision: str, entry: dict | None) -> Path:
    """The cached shared library of ``source`` and its header, compiled from checked copies.

    With a manifest ``entry`` the source must match its ``sha256`` and the header the entry's
    ``c.file_sha256`` record (a manifest without one is refused); a bare ``.c`` (no manifest) is
    compiled as it is, like any bare model file."""
    c = (entry or {}).get("c") or {}
    header_name = str(c.get("header") or f"{prefix}.h")
    if Path(header_name).name != header_name or header_name in (".", ".."):  # it is written into a temp folder
        raise UserError(f"the manifest's C header {header_name!r} is not a plain file name: re-export the artifacts")
    header = source.parent / header_name
    src_sha = hdr_sha = None
    if entry is not None:
        src_sha = entry.get("sha256")
        hdr_sha = (c.get("file_sha256") or {}).get(f"{c.get('dir')}/{header_name}")
        if not src_sha or not hdr_sha:
            raise UserError(f"the manifest lists no sha256 for the C {'source' if not src_sha else 'header'} of "
                            f"{entry.get('name')!r}: refusing to compile unverified code; re-export the artifacts")
    src = checked_bytes(source, src_sha, "C model source", "compile")
    hdr = checked_bytes(header, hdr_sha, "C model header", "compile") if (entry is not None or header.is_file()) else b""
    cc = CBackend.library()
    key = hashlib.sha256(b"\0".join([src, hdr, " ".join(_compile_command(cc, precision)).encode()])).hexdigest()
    so = private_dir("c") / f"lib{prefix}-{key[:24]}.so"
    if not so.is_file():
        with tempfile.TemporaryDirectory(prefix=".src-", dir=so.parent) as tmp:
            (Path(tmp) / source.name).write_bytes(src)
            if hdr:
                (Path(tmp) / header_name).write_bytes(hdr)
            compile_shared(Path(tmp) / source.name, so, precision)
    return so


class CBackend(Backend):
    name = "c"
    formats = ("c",)
    install = "sudo apt-get install gcc"
    what = "the C compiler (gcc) for the C backend"

    @classmethod
    def library(cls):
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise MissingDependency(cls.what, cls.install)
        return cc

    @classmethod
    def library_for(cls, entry: dict | None):
        """No compiler is needed for an entry with a library prebuilt for this machine (ctypes does)."""
        if _prebuilt_here(entry):
            return ctypes
        return cls.library()

    def __init__(self, path: Path, *, entry: dict | None = None, threads: int = 1, **options):
        self.path = Path(path)
        self.kind = (entry or {}).get("kind", options.get("kind", "sequence"))
        if self.path.suffix == ".so":
            so = self.path
            prefix = self.path.stem[3:] if self.path.stem.startswith("lib") else self.path.stem
        else:
            prefix = ((entry or {}).get("c") or {}).get("prefix") or self.path.stem
            if not self.path.is_file():
                raise UserError(f"C model source {self.path} is missing: re-export the artifacts")
            precision = (entry or {}).get("precision", "int8" if "int8" in prefix else "float32")
            so = prebuilt_library(self.path, entry) or compiled_library(self.path, prefix, precision, entry)
        try:
            lib = ctypes.CDLL(str(Path(so).resolve()))  # a bare relative name would search the library path
            self._step = getattr(lib, f"{prefix}_step")
            self._run = getattr(lib, f"{prefix}_run", None)  # optional: a library of only _step works too
            self._reset = getattr(lib, f"{prefix}_reset")
            state_size = getattr(lib, f"{prefix}_state_size")
            info_fn = getattr(lib, f"{prefix}_info")
        except (OSError, AttributeError) as e:
            raise self.load_error(so, "ctypes (C backend)", e) from None
        state_size.restype = ctypes.c_size_t
        info = (ctypes.c_int32 * 4)()
        info_fn(info)
        self.lib, self.prefix = lib, prefix
        self.state_bytes = int(state_size())
        self.channels, self.classes, self.int8 = int(info[0]), int(info[1]), bool(info[2])
        xt, yt = (np.int8, np.int32) if self.int8 else (np.float32, np.float32)
        self.x_dtype, self.y_dtype = xt, yt
        q_in = q_out = None
        if self.int8:
            scale = struct.unpack("<f", struct.pack("<i", int(info[3])))[0]
            q_in, q_out = Quant(scale, 0), Quant(2.0 ** -16, 0)
            for t in (entry or {}).get("inputs", []):
                q_in = Quant.from_json(t.get("quant")) or q_in
        cptr = ctypes.POINTER(ctypes.c_int8 if self.int8 else ctypes.c_float)
        yptr = ctypes.POINTER(ctypes.c_int32 if self.int8 else ctypes.c_float)
        self._step.argtypes = [ctypes.c_void_p, cptr, yptr]
        self._step.restype = None
        if self._run is not None:
            self._run.argtypes = [ctypes.c_void_p, cptr, ctypes.c_int32, yptr]
            self._run.restype = None
        self._reset.argtypes = [ctypes.c_void_p]
        self._reset.restype = None
        self._cptr, self._yptr = cptr, yptr
        x_shape = (None, None, self.channels) if self.kind == "sequence" else (None, self.channels)
        self.inputs = [TensorSpec("x", x_shape, np.dtype(xt).name, q_in)]
        self.outputs = [TensorSpec("scores", (None, self.classes), np.dtype(yt).name, q_out)]
        self.has_variables = True
        self.states: list[ctypes.Array] = []
        self._fresh = False  # states just zeroed: a whole sequence can go to <prefix>_run in one call

    def reset_variables(self) -> None:
        self.states = []  # re-created (zeroed by <prefix>_reset) at the next run, for its batch size

    def _ensure_states(self, batch: int) -> None:
        if len(self.states) != batch:
            self.states = [ctypes.create_string_buffer(self.state_bytes) for _ in range(batch)]
            for s in self.states:
                self._reset(s)
            self._fresh = True

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        x = np.ascontiguousarray(feeds[0], dtype=self.x_dtype)
        if x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3 or x.shape[2] != self.channels:
            raise UserError(f"C model {self.path} expects frames of {self.channels} features, got shape {feeds[0].shape}")
        batch, steps = x.shape[0], x.shape[1]
        self._ensure_states(batch)
        y = np.zeros((batch, self.classes), self.y_dtype)
        for b in range(batch):
            yb = y[b].ctypes.data_as(self._yptr)
            if self._fresh and self._run is not None:  # from a zero state: one C call for the whole sequence (<prefix>_run resets first)
                self._run(self.states[b], x[b].ctypes.data_as(self._cptr), steps, yb)
            else:  # carrying state (a stream): frame by frame
                for t in range(steps):
                    self._step(self.states[b], x[b, t].ctypes.data_as(self._cptr), yb)
        self._fresh = False
        return [y]

    def describe(self) -> str:
        return f"c ({self.prefix}, {'int8' if self.int8 else 'float32'})"


BACKEND = CBackend
