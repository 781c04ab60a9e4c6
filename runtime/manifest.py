"""Read an artifact folder's ``manifest.json``, verify file hashes, pick artifacts.

The manifest format is described in docs/contracts.md. Nothing here imports an inference library.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path, PurePosixPath

from runtime.errors import UserError
from runtime.tolerances import POLICY

FORMAT = "rnn-edge-artifacts/1"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def output_scale(entry: dict) -> float | None:
    """One LSB of the ``scores`` output: its own scale when it is an integer tensor, else the scale of
    the integer tensor it is dequantized from (``dequantized_from``: an int8 graph with float outputs);
    None for a float graph."""
    outs = entry.get("outputs") or []
    out = next((o for o in outs if o.get("name") == "scores"), outs[0] if outs else None)
    if out is None:
        return None
    for dtype, q in ((out.get("dtype"), out.get("quant")),
                     ((out.get("dequantized_from") or {}).get("dtype"), out.get("dequantized_from"))):
        if q and str(dtype or "").startswith(("int", "uint")):
            return float(q["scale"])
    return None


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


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive(v) -> bool:
    return _integer(v) and v > 0


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _string(v) -> bool:
    return isinstance(v, str)


def _sha256(v) -> bool:
    return isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None


def _list_of(test):
    return lambda v: isinstance(v, list) and all(test(x) for x in v)


def _nullable(test):
    return lambda v: v is None or test(v)


def _quant(v) -> bool:
    return not v or (isinstance(v, dict) and _number(v.get("scale")) and _integer(v.get("zero_point")))


def _prebuilt(v) -> bool:
    return isinstance(v, dict) and all(isinstance(p, dict) and _string(p.get("file"))
                                       and _nullable(_sha256)(p.get("sha256")) for p in v.values())


# What each field a reader uses must hold when present (absent ones get the readers' defaults):
# ``(test, description)``, plus the rules every item follows for a list of objects; for an object
# (which may be null) the rules of its fields. A hand-edited or crafted manifest is refused here, in
# one line, rather than with a TypeError deep inside a backend or an app.
_SHA = (_nullable(_sha256), "a sha256 (64 lowercase hex digits)")
_OBJECT = (lambda v: v is None or isinstance(v, dict), "an object")
_TENSOR = {"shape": (_list_of(_nullable(_integer)), "a list of integers or nulls"), "dtype": (_string, "a string"),
           "quant": (_quant, 'null or {"scale": number, "zero_point": integer}'),
           "index": (_nullable(_integer), "an integer")}
_TENSORS = (_list_of(lambda t: isinstance(t, dict) and _string(t.get("name"))),
            'a list of objects, each with a string "name"', _TENSOR)
# the audio front-end (runtime.features.FeatureConfig), wherever a manifest records it
_FEATURES = {**{k: (_positive, "a positive integer") for k in ("sample_rate", "win", "hop", "n_fft", "n_mels")},
             **{k: (_number, "a number") for k in ("fmin", "fmax", "log_floor")}}
_RULES = {
    "class_names": (_nullable(_list_of(_string)), "a list of strings"),
    "model": {"input_size": (_positive, "a positive integer"), "num_classes": (_positive, "a positive integer"),
              "seq_len": (_nullable(_positive), "a positive integer"), "head": (_nullable(_string), "a string")},
    "preprocess": {"mean": (_list_of(_number), "a list of numbers"), "std": (_list_of(_number), "a list of numbers"),
                   "features": _FEATURES},
    "features": _FEATURES,
    "dataset": {"features": _FEATURES},
    "golden": {"file": (_nullable(_string), "a path"), "sha256": _SHA},
    "checkpoint": {"file": (_nullable(_string), "a path"), "sha256": _SHA},
}
_ENTRY_RULES = {
    "file": (_nullable(_string), "a path"),
    "sha256": _SHA,
    "format": (_nullable(_string), "a string"),
    "runtime": (_nullable(_string), "a string"),
    "kind": (lambda v: v in (None, "sequence", "step"), '"sequence" or "step"'),
    "status": (_string, "a string"),
    "inputs": _TENSORS,
    "outputs": _TENSORS,
    "state": {"mode": (_string, "a string"), "inputs": (_nullable(_list_of(_string)), "a list of tensor names"),
              "outputs": (_nullable(_list_of(_string)), "a list of tensor names")},
    "c": {"prefix": (_nullable(_string), "a string"), "dir": (_nullable(_string), "a path"),
          "header": (_nullable(_string), "a file name"), "source": (_nullable(_string), "a file name"),
          "files": (_nullable(_list_of(_string)), "a list of paths"),
          "file_sha256": (lambda v: v is None or (isinstance(v, dict) and all(map(_sha256, v.values()))),
                          "an object of path: sha256 (64 lowercase hex digits)"),
          "prebuilt": (_nullable(_prebuilt), 'an object of machine: {"file": path, "sha256": hex}')},
    # the TFLite Micro tensor arena the export measured (a size <= 0 makes TFLM refuse a sound model)
    "arena_bytes": (_nullable(_positive), "a positive integer (bytes)"),
}


def _field_problem(obj: dict, rules: dict, where: str) -> str | None:
    """The first field of ``obj`` that breaks ``rules``, as "field X must be ..., got ...", or None."""
    for key, rule in rules.items():
        if key not in obj:
            continue
        value, at = obj[key], f"{where}{key}"
        if isinstance(rule, dict):  # an object (or null) whose own fields follow ``rule``
            if value is None:
                continue
            if not isinstance(value, dict):
                return f"field {at} must be an object, got {_shown(value)}"
            if problem := _field_problem(value, rule, f"{at}."):
                return problem
            continue
        test, what, *each = rule
        if not test(value):
            return f"field {at} must be {what}, got {_shown(value)}"
        for i, item in enumerate(value if each else []):  # a list of objects, each following each[0]
            if problem := _field_problem(item, each[0], f"{at}[{i}]."):
                return problem
    return None


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _structure_problem(data: dict) -> str | None:
    """What makes a manifest unusable (the fields readers use, with the wrong type), or None. Paths
    are checked too: a crafted manifest must not make a reader read or write outside the folder."""
    arts = data.get("artifacts", [])
    if not isinstance(arts, list):
        return "'artifacts' is not a list"
    for i, a in enumerate(arts):
        if not isinstance(a, dict) or not isinstance(a.get("name"), str):
            return f"artifact entry {i} is not an object with a name"
    pre = data.get("preprocess")
    if pre and not (isinstance(pre, dict) and "mean" in pre and "std" in pre):
        return "'preprocess' needs 'mean' and 'std' lists"
    if problem := _field_problem(data, _RULES, ""):
        return problem
    names, classes = data.get("class_names"), (data.get("model") or {}).get("num_classes")
    if names and classes is not None and len(names) != classes:  # predict labels class k with names[k]
        return f"class_names has {len(names)} names for {classes} classes"
    for i, a in enumerate(arts):
        if problem := _field_problem(a, _ENTRY_RULES, f"artifacts[{i}] ({a['name']})."):
            return problem
        # check judges an entry's numbers by its precision's tolerance (a missing one counts as float32)
        precision = a.get("precision", "float32")
        if (precision is not None or a.get("status", "ok") == "ok") and precision not in POLICY:
            return (f"field artifacts[{i}] ({a['name']}).precision must be one of {', '.join(POLICY)}, "
                    f"got {_shown(precision)}")
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
    return None


def _not_an_artifact_folder(folder: Path, bare_files: bool) -> str:
    """Why ``folder`` cannot be read as an artifact folder, saying what it is instead."""
    export = "pass an artifact folder written by `invoke export`"
    if folder.is_file() and folder.name == "manifest.json":
        return f"{folder} is the manifest file itself: pass its folder, {folder.parent}"
    if folder.is_file() and (folder.parent / "manifest.json").is_file():
        # the folder's manifest holds the sha256 this file is verified against, and the golden samples
        return (f"{folder} is a file inside the artifact folder {folder.parent}: pass the folder "
                f"(with --artifact NAME to choose this file's entry)")
    if folder.is_file():
        return f"{folder} is a file, not an artifact folder: {export}"
    if not folder.exists():
        return f"{folder} does not exist: {export}"
    return f"{folder} has no manifest.json: {export}" + (" or a single .onnx/.tflite file" if bare_files else "")


class Manifest:
    """An artifact folder's index: model facts, preprocessing, golden data and artifacts."""

    def __init__(self, folder: Path, data: dict):
        self.folder = Path(folder)
        self.data = data
        self.artifacts: list[dict] = list(data.get("artifacts") or [])

    @classmethod
    def read(cls, folder, bare_files: bool = False) -> "Manifest":
        """The manifest of artifact folder ``folder``; ``bare_files``: the caller also loads a single
        model file (``runtime.load``), which the message for a folder without a manifest then offers."""
        folder = Path(folder)
        path = folder / "manifest.json"
        if not path.is_file():
            raise UserError(_not_an_artifact_folder(folder, bare_files))
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
            raise UserError(f"golden file {path} cannot be read: it {e}; re-export the artifacts") from None
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
        # a relative path was written from where the export ran, usually the repository root: tried from
        # here, then from each folder above the artifact folder (the first file found that matches the sha256)
        above = [a / p for a in self.folder.resolve().parents]
        candidates = [p] if p.is_absolute() else [self.folder / p, Path.cwd() / p, *above, self.folder / p.name]
        found = [cand for cand in candidates if cand.is_file()]
        for cand in found:  # the first that matches: a stale copy on the way must not hide a good one
            if sha256_of(cand) == c.get("sha256"):
                return cand
        if found:
            return verify_file(found[0], c.get("sha256"), "checkpoint")  # refused, naming the first copy
        raise UserError(f"checkpoint {c['file']} named in {self.folder}/manifest.json was not found: "
                        f"restore it or run from the repository root")

    # -- selection -----------------------------------------------------------------------
    def by_name(self, name: str) -> dict:
        for a in self.artifacts:
            if a.get("name") == name:
                return a
        raise UserError(f"no artifact named {name!r} in {self.folder}: choose one of {', '.join(self.names()) or '(none: re-export)'}")

    def candidates(self, backend: str, formats: tuple[str, ...], precision: str | None = None) -> list[dict]:
        """Usable entries made for ``backend`` (their ``runtime`` field) in a format it opens. Only
        those: a file made for another runtime may use ops this one runs forever or not at all (a
        float32 LiteRT .tflite loops over time with WHILE, which TFLite Micro never finishes)."""
        return [a for a in self.artifacts if a.get("status", "ok") == "ok" and a.get("runtime") == backend
                and a.get("format") in formats and (precision is None or a.get("precision") == precision)]

    def require_runtime(self, entry: dict, backend: str) -> None:
        """Refuse running ``entry`` on ``backend`` unless the manifest lists it for that runtime."""
        if entry.get("runtime") != backend:
            own = [a["name"] for a in self.artifacts if a.get("runtime") == backend and a.get("status", "ok") == "ok"]
            choose = f"choose one it runs: {', '.join(own)}" if own else f"{backend} runs none of the artifacts here"
            raise UserError(f"artifact {entry.get('name')!r} was exported for {entry.get('runtime')}, not {backend}: "
                            f"drop --backend to run it on {entry.get('runtime')}, or {choose}")

    def companion(self, entry: dict, kind: str, backend: str, formats: tuple[str, ...]) -> dict | None:
        """The entry of the other kind (sequence <-> step) with the same precision for the same backend."""
        for a in self.candidates(backend, formats, entry.get("precision")):
            if a.get("kind") == kind and a is not entry:
                return a
        return None
