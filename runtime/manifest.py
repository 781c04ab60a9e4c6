"""Read an artifact folder's ``manifest.json``, verify file hashes, pick artifacts.

The manifest format is described in docs/contracts.md. Nothing here imports an inference library.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath

from runtime.errors import UserError

FORMAT = "rnn-edge-artifacts/1"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, expected: str | None, what: str = "model file") -> Path:
    """Refuse a missing file or one whose sha256 differs from the manifest's."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} listed in the manifest is missing: re-export the artifacts or restore it")
    if not expected:
        raise UserError(f"the manifest lists no sha256 for {what} {path}: refusing to load an unverified file; re-export")
    actual = sha256_of(path)
    if actual != expected:
        raise UserError(f"{what} {path} failed sha256 verification (manifest {expected[:12]}..., file {actual[:12]}...): "
                        f"it was modified or corrupted; refusing to load it - re-export or restore it")
    return path


def checked_bytes(path: Path, expected: str | None, what: str = "model file", use: str = "load") -> bytes:
    """The bytes of ``path``, refused (one line) when ``expected`` is given and their sha256 differs.
    Callers parse these very bytes, so nothing can swap the file between the check and the use."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        raise UserError(f"{what} {path} is missing or unreadable: re-export the artifacts or restore it") from None
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise UserError(f"{what} {path} failed sha256 verification (manifest {str(expected)[:12]}...): it was "
                        f"modified or corrupted; refusing to {use} it - re-export or restore it")
    return data


def copy_verified_c(folder: Path, entry: dict, dest: Path) -> Path:
    """The C package of ``entry`` (the ``.c`` and ``.h`` files its ``c.file_sha256`` lists in its
    folder) written into ``dest`` from bytes checked against the manifest, so that a compiler given
    ``-I dest`` sees verified files only: an unlisted header left in the artifact folder (a
    ``string.h`` shadowing the system one) or a changed one is never compiled. The source and its
    header are required; other listed files are copied where present. Returns ``dest``."""
    c = entry.get("c") or {}
    sums = c.get("file_sha256") or {}
    src_dir = PurePosixPath(entry["file"]).parent
    needed = {PurePosixPath(entry["file"]).name, str(c.get("header"))}
    root = Path(folder).resolve()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for rel, expected in sums.items():
        p = PurePosixPath(rel)
        if p.parent != src_dir or p.suffix not in (".c", ".h"):
            continue
        path = Path(folder) / rel
        if p.name not in needed and not path.exists():
            continue  # a listed extra (the self-test header) that this copy of the folder does not carry
        if not path.resolve().is_relative_to(root):
            raise UserError(f"{path} leads outside {folder} (a symbolic link): refusing to compile it; re-export")
        (dest / p.name).write_bytes(checked_bytes(path, expected, "C file", "compile"))
        needed.discard(p.name)
    if needed:
        raise UserError(f"the manifest lists no sha256 for {', '.join(sorted(needed))} of {entry.get('name')!r}: "
                        f"refusing to compile unverified code; re-export the artifacts")
    return dest


def _unsafe_path(value) -> bool:
    """A manifest path that could leave the artifact folder: absolute, with a '..' part, or not a string."""
    if not isinstance(value, str) or not value or "\\" in value or "\0" in value:
        return True
    p = PurePosixPath(value)
    return p.is_absolute() or ".." in p.parts


def _paths_of(a: dict) -> list:
    """Every path an artifact entry names (readers join each one to the folder)."""
    paths = [a["file"]] if a.get("file") is not None else []
    c = a.get("c")
    if isinstance(c, dict):
        paths += [c[k] for k in ("dir", "header", "source") if c.get(k) is not None]
        paths += list(c.get("files") or []) + list((c.get("file_sha256") or {}).keys())
        paths += [p.get("file") for p in (c.get("prebuilt") or {}).values() if isinstance(p, dict)]
    return paths


def _structure_problem(data: dict) -> str | None:
    """What makes a manifest unusable (the fields every reader indexes), or None. Paths are checked
    too: a crafted manifest must not make a reader read or write outside the folder."""
    arts = data.get("artifacts", [])
    if not isinstance(arts, list):
        return "'artifacts' is not a list"
    for i, a in enumerate(arts):
        if not isinstance(a, dict) or not isinstance(a.get("name"), str):
            return f"artifact entry {i} is not an object with a name"
        if a.get("status", "ok") == "ok" and not isinstance(a.get("file"), str):
            return f"artifact {a['name']!r} names no file"
        bad = next((p for p in _paths_of(a) if _unsafe_path(p)), None)
        if bad is not None or (isinstance(a.get("c"), dict) and a["c"].get("header") is not None
                               and PurePosixPath(str(a["c"]["header"])).name != a["c"]["header"]):
            return f"artifact {a['name']!r} names the path {bad if bad is not None else a['c']['header']!r}, which leaves its folder"
        c = a.get("c")
        if isinstance(c, dict) and c.get("prefix") is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(c["prefix"])):
            return f"artifact {a['name']!r} has C prefix {c['prefix']!r}, which is not a C identifier"
    g = data.get("golden")
    if isinstance(g, dict) and g.get("file") is not None and _unsafe_path(g["file"]):
        return f"the golden file {g['file']!r} leaves the folder"
    pre = data.get("preprocess")
    if pre and not (isinstance(pre, dict) and isinstance(pre.get("mean"), list) and isinstance(pre.get("std"), list)):
        return "'preprocess' needs 'mean' and 'std' lists"
    return None


class Manifest:
    """An artifact folder's index: model facts, preprocessing, golden data and artifacts."""

    def __init__(self, folder: Path, data: dict):
        self.folder = Path(folder)
        self.data = data
        self.artifacts: list[dict] = list(data.get("artifacts") or [])

    @classmethod
    def read(cls, folder) -> "Manifest":
        folder = Path(folder)
        path = folder / "manifest.json"
        if not path.is_file():
            raise UserError(f"{folder} has no manifest.json: pass an artifact folder written by `invoke export` "
                            f"or a single .onnx/.tflite file")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path} is not valid JSON ({e}): re-export the artifacts") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise UserError(f"{path} is not an rnn-edge manifest (format {got!r}, expected {FORMAT!r}): pass an "
                          f"artifact folder written by invoke export")
        if problem := _structure_problem(data):
            raise UserError(f"{path} is damaged: {problem}; re-export the artifacts")
        return cls(folder, data)

    # -- facts ---------------------------------------------------------------------------
    @property
    def model(self) -> dict:
        return self.data.get("model") or {}

    @property
    def class_names(self) -> list[str]:
        return list(self.data.get("class_names") or [])

    @property
    def preprocess(self) -> tuple[list[float], list[float]] | None:
        p = self.data.get("preprocess")
        if not p:
            return None
        return list(p["mean"]), list(p["std"])

    def names(self) -> list[str]:
        return [a.get("name", "?") for a in self.artifacts]

    def file_of(self, entry: dict) -> Path:
        return self.inside(entry["file"])

    def inside(self, rel: str) -> Path:
        """``folder / rel``, refused (one line) when it resolves outside the folder (a symlink)."""
        path = self.folder / rel
        if not path.resolve().is_relative_to(self.folder.resolve()):
            raise UserError(f"{path} leads outside {self.folder} (a symbolic link): refusing to read it; re-export")
        return path

    def verified(self, entry: dict) -> Path:
        """The entry's file, after checking its sha256; for a C entry its header too (the source
        includes it, so it is code as much as the source is)."""
        path = verify_file(self.file_of(entry), entry.get("sha256"), f"model file ({entry.get('name')})")
        if entry.get("format") == "c":
            c = entry.get("c") or {}
            rel = str(Path(entry["file"]).parent / str(c.get("header")))
            verify_file(self.inside(rel), (c.get("file_sha256") or {}).get(rel), f"C header ({entry.get('name')})")
        return path

    def verified_c(self, entry: dict, dest) -> Path:
        """``copy_verified_c`` of this folder: the entry's C files, checked, copied into ``dest``."""
        return copy_verified_c(self.folder, entry, Path(dest))

    def golden_path(self) -> Path:
        g = self.data.get("golden") or {}
        if not g.get("file"):
            raise UserError(f"{self.folder}/manifest.json lists no golden samples: re-export to create golden.npz")
        return verify_file(self.inside(g["file"]), g.get("sha256"), "golden file")

    def golden(self, *keys: str) -> dict:
        """The golden samples as arrays (file sha256-verified); one line when the file cannot be
        read or lacks one of ``keys``."""
        from runtime.npz import NpzUnreadable, read_npz
        path = self.golden_path()
        try:
            data = read_npz(path)
        except NpzUnreadable as e:
            raise UserError(f"golden file {path} {e}: re-export the artifacts") from None
        missing = [k for k in keys if k not in data]
        if missing:
            raise UserError(f"golden file {path} lacks {', '.join(missing)}: re-export the artifacts")
        return data

    def checkpoint_path(self) -> Path:
        """The training checkpoint the artifacts were exported from (for the PyTorch reference)."""
        c = self.data.get("checkpoint") or {}
        if not c.get("file"):
            raise UserError(f"{self.folder}/manifest.json names no checkpoint: the PyTorch reference needs one")
        p = Path(c["file"])
        candidates = [p] if p.is_absolute() else [self.folder / p, Path.cwd() / p, self.folder / p.name]
        for cand in candidates:
            if cand.is_file():
                return verify_file(cand, c.get("sha256"), "checkpoint")
        raise UserError(f"checkpoint {c['file']} named in {self.folder}/manifest.json was not found: "
                        f"restore it or run from the repository root")

    # -- selection -----------------------------------------------------------------------
    def by_name(self, name: str) -> dict:
        for a in self.artifacts:
            if a.get("name") == name:
                return a
        raise UserError(f"no artifact named {name!r} in {self.folder}: choose one of {', '.join(self.names()) or '(none: re-export)'}")

    def candidates(self, backend: str, formats: tuple[str, ...], precision: str | None = None) -> list[dict]:
        """Usable entries for ``backend``: its own first (``runtime`` field), then any of a format it runs."""
        ok = [a for a in self.artifacts if a.get("status", "ok") == "ok"
              and (precision is None or a.get("precision") == precision)]
        own = [a for a in ok if a.get("runtime") == backend]
        other = [a for a in ok if a.get("runtime") != backend and a.get("format") in formats]
        return own + other

    def companion(self, entry: dict, kind: str, backend: str, formats: tuple[str, ...]) -> dict | None:
        """The entry of the other kind (sequence <-> step) with the same precision for the same backend."""
        for a in self.candidates(backend, formats, entry.get("precision")):
            if a.get("kind") == kind and a is not entry:
                return a
        return None
