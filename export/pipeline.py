"""Checkpoint -> verified artifact folder, written atomically.

``export_artifacts(checkpoint, out_dir, *, task=None, kinds=None, progress=True, arch=None)``:

1. Check the inputs before any work: the checkpoint (unidirectional LSTM/GRU of the expected
   ``arch``), the families asked for (``kinds`` from ``KINDS``; TFLite needs TensorFlow), the output
   folder (writable; an existing folder must be an artifact folder this tool wrote that holds nothing
   its manifest does not list, never a user's other data), the checkpoint's metadata fields.
2. Build the whole folder in a temporary sibling ``.<name>.tmp-*``: ONNX (export/onnx_export.py),
   TFLite (``export.tflite_export.export_tflite``) and C (``export.c.export_c``) when importable,
   then golden.npz and manifest.json.
3. Swap it in: the temporary folder and the old one exchange names in one ``renameat2`` call
   (two renames where the filesystem lacks it), then the old one is deleted. Any fatal error
   before that removes the temporary folder and leaves the existing one untouched.

An artifact that fails (exception, converter crash in its child process) is a ``failed`` record
with one line naming it; the other artifacts are still written and the folder is still swapped in.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath

from export import manifest as M
from runtime import atomic
from runtime.atomic import swap_in  # noqa: F401 (export.pipeline.swap_in: the kill tests hook it here)
from runtime.errors import MissingDependency, UserError

KINDS = ("onnx", "tflite", "c")
ARCHS_SUPPORTED = ("lstm", "gru")
EXPORT_EXTRA = "pip install -e '.[export]'"
_KNOWN_SPEC_KEYS = {"arch", "input_size", "hidden_sizes", "num_classes", "head"}


# -- input checks -------------------------------------------------------------------------------
def inspect_checkpoint(path) -> dict:
    """The checkpoint's spec, read from the safetensors header without building the model.

    Refuses what export cannot represent (bidirectional or other unknown options, reverse-direction
    weights, an architecture other than LSTM/GRU) with one line each.
    """
    from training.checkpoint import read_checkpoint
    given = Path(path)
    try:
        path, header, names = read_checkpoint(given, tensors=False)
    except UserError:
        if given.is_file() and given.suffix != ".safetensors":  # train_state.pt, metrics.json: not a damaged one
            raise UserError(f"{given} is not a model checkpoint: pass the run folder that `invoke train` wrote "
                            f"or its model.safetensors") from None
        raise
    try:
        spec = json.loads(header.get("spec", "null"))
    except ValueError as e:
        raise UserError(f"checkpoint {path} has a damaged header ({type(e).__name__}): retrain or restore it") from None
    if not isinstance(spec, dict):
        raise UserError(f"{path} is not an rnn-edge checkpoint (no model spec in its header): export needs one from `invoke train`")
    if spec.get("bidirectional") or any("_reverse" in n for n in names):
        raise UserError(f"checkpoint {path} is bidirectional: export supports unidirectional LSTM/GRU only "
                        f"(a streaming device cannot see future frames); retrain without bidirectional")
    extra = sorted(k for k in spec if k not in _KNOWN_SPEC_KEYS and spec[k] not in (None, False, 0, 1, ""))
    if extra:
        raise UserError(f"checkpoint {path} uses model option(s) export does not support: {', '.join(extra)}; "
                        f"retrain with a plain stacked LSTM/GRU")
    if spec.get("arch") not in ARCHS_SUPPORTED:
        raise UserError(f"checkpoint {path} has architecture {spec.get('arch')!r}: export supports lstm and gru only")
    return spec


def check_kinds(kinds) -> tuple[str, ...]:
    if kinds is None:
        return KINDS
    if isinstance(kinds, str):
        kinds = [k for k in kinds.replace(" ", ",").split(",") if k]
    kinds = tuple(dict.fromkeys(str(k).lower() for k in kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise UserError(f"unknown artifact kind(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(KINDS)}")
    return kinds


def _installed(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it (TensorFlow takes seconds)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_dependencies(kinds) -> None:
    if not _installed("onnx") or not _installed("onnxruntime"):
        raise MissingDependency("onnx and onnxruntime (needed by export)", EXPORT_EXTRA)
    if "tflite" in kinds and not (_installed("tensorflow") and _installed("tf_keras")):
        raise MissingDependency("TensorFlow + tf-keras (needed for the TFLite artifacts; or pass --kinds onnx,c)",
                                EXPORT_EXTRA)


def check_output(out_dir: Path) -> None:
    """The output folder can be created and replaced: it is new, empty, or an artifact folder this tool
    wrote that holds nothing its manifest does not list (replacing it deletes everything in it)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output {out_dir} exists and is not a folder: choose another with --out")
    if out_dir.is_dir() and (names := sorted(os.listdir(out_dir))):
        manifest = _own_manifest(out_dir)
        if manifest is None:
            why = f"its {M.MANIFEST} is not an rnn-edge manifest" if M.MANIFEST in names else f"no {M.MANIFEST}"
            raise UserError(f"output folder {out_dir} is not an artifact folder ({why}) and holds {names[0]}: "
                            f"refusing to replace it; move its files or choose another --out")
        if foreign := _unlisted(out_dir, manifest):
            raise UserError(f"output folder {out_dir} holds {foreign[0]}, which its {M.MANIFEST} does not list: "
                            f"refusing to replace the folder (that would delete it); move it or choose another --out")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{out_dir.name}.probe-", dir=out_dir.parent)
        os.rmdir(probe)
    except OSError as e:
        if file := next((p for p in out_dir.parents if p.is_file()), None):
            raise UserError(f"cannot write to output folder {out_dir}: {file} is a file, not a folder; "
                            f"choose another with --out") from None
        raise UserError(f"cannot write to output folder {out_dir} ({e.strerror or type(e).__name__}): "
                        f"choose another with --out") from None


def _own_manifest(folder: Path) -> dict | None:
    """The folder's manifest when this tool wrote it (its ``format``, a readable structure), else None."""
    from runtime.manifest import Manifest
    try:
        return Manifest.read(folder).data
    except (UserError, OSError):
        return None


def _unlisted(folder: Path, manifest: dict) -> list[str]:
    """What ``folder`` holds besides manifest.json, golden.npz and the files ``manifest`` lists, sorted;
    a subfolder with no listed file in it is named once, as ``name/``."""
    listed = {M.MANIFEST, M.GOLDEN}
    for rec in manifest.get("artifacts") or []:
        listed.update(_package_files(rec))
    parents = {str(parent) for rel in listed for parent in PurePosixPath(rel).parents}
    found = []
    for root, dirs, files in os.walk(folder):
        here = PurePosixPath(Path(root).relative_to(folder).as_posix())
        found += [f"{here / d}/" for d in dirs if str(here / d) not in parents]
        dirs[:] = [d for d in dirs if str(here / d) in parents]  # an unlisted folder is named, not walked
        found += [str(here / f) for f in files if str(here / f) not in listed]
    return sorted(found)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_OBJECT = ("an object", lambda v: v is None or isinstance(v, dict))
# The checkpoint metadata fields export reads (besides input_mean/std, which load_model checks), with
# the form training writes; a parent comes before its fields.
_META_FIELDS = (
    ("task", "a task name", lambda v: v is None or isinstance(v, str)),
    ("class_names", "a list of class names", lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v)),
    ("seq_len", "a whole number of frames", lambda v: v is None or (_whole(v) and v > 0)),
    ("dataset", *_OBJECT), ("dataset.features", *_OBJECT), ("forecast", *_OBJECT), ("frames", *_OBJECT),
    ("config", *_OBJECT), ("config.data", *_OBJECT), ("config.seed", "a whole number", _whole),
)


def check_meta(meta: dict, path: Path) -> None:
    """One line for a metadata field of the wrong type (an edited or damaged header), instead of a
    TypeError wherever export first uses it."""
    for key, what, ok in _META_FIELDS:
        parent, _, name = key.rpartition(".")
        holder = meta.get(parent) if parent else meta
        if isinstance(holder, dict) and name in holder and not ok(holder[name]):
            got = holder[name]
            raise UserError(f"checkpoint {path}: its metadata field {key} is malformed ({type(got).__name__} "
                            f"{json.dumps(got)[:40]}, expected {what}): retrain it, or import it again if it "
                            f"came from --keras")


# -- families -------------------------------------------------------------------------------------
def _optional_exporter(module: str, attr: str):
    """The exporter function, or None when its module is not in this checkout."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            return None
        raise
    return getattr(mod, attr, None)


def _family_failed(family: str, e: BaseException) -> dict:
    msg = " ".join(str(e).split()) or type(e).__name__
    return M.failed_record(family, f"{family} export failed: {type(e).__name__}: {msg}"[:400], format=family)


def _run_family(family: str, fn, *args) -> list[dict]:
    try:
        records = list(fn(*args) or [])
    except MissingDependency:
        raise
    except Exception as e:  # the family's own per-artifact handling missed it: one line, keep going
        if M.out_of_room(e):
            raise
        return [_family_failed(family, e)]
    return records


_CONTRACT_FIELDS = tuple(M.new_record("", "", format="", runtime="", precision="", kind=""))


def _judge_records(records: list[dict]) -> None:
    """Every contract field present; the tolerance policy applied to records that carry metrics
    (never upgrades a status)."""
    from export.verify import judge
    for rec in records:
        for key in _CONTRACT_FIELDS:
            rec.setdefault(key, None)
        m = rec.get("metrics") or {}
        if (rec.get("status", "ok") == "ok" and ("top1_agreement" in m or m.get("head") == "forecast")
                and "max_abs_err" in m and rec.get("precision")):
            try:
                status, error = judge(m, rec["precision"])
            except KeyError:
                continue
            if status != "ok":
                rec["status"], rec["error"] = status, f"{rec['name']}: {error}"
        rec.setdefault("status", "ok")
        rec.setdefault("error", None)
    # A record with no metrics of its own that runs the very file of a judged one (c-int8-step: the
    # library of c-int8) is as good as that one: it takes a status other than ok from it.
    judged = {(r.get("file"), r.get("precision")): r for r in records if r.get("metrics") and r.get("file")}
    for rec in records:
        src = judged.get((rec.get("file"), rec.get("precision")))
        if src is not None and src is not rec and not rec.get("metrics") and rec["status"] == "ok" != src["status"]:
            rec["status"], rec["error"] = src["status"], f"{rec['name']}: runs the library of {src['error']}"


# -- a partial export keeps the other families ------------------------------------------------------
def kept_records(out_dir: Path, kinds: list[str], checkpoint: Path) -> list[dict]:
    """The records of the families *not* exported now, from an existing artifact folder of the same
    checkpoint (sha256): ``--kinds onnx`` over a full export replaces the ONNX files and keeps the
    TFLite and C ones. Over another checkpoint's folder that would mix two models: refused."""
    from runtime.manifest import Manifest
    if set(kinds) == set(KINDS) or not (out_dir / M.MANIFEST).is_file():
        return []
    old = Manifest.read(out_dir)
    others = [dict(a) for a in old.artifacts if a.get("format") not in kinds]
    if not others:
        return []
    if (old.data.get("checkpoint") or {}).get("sha256") != M.file_sha256(checkpoint):
        families = ", ".join(sorted({str(a.get("format")) for a in others}))
        raise UserError(f"{out_dir} holds {families} artifacts of another checkpoint: exporting only "
                        f"{', '.join(kinds)} there would drop them or mix two models; export every family "
                        f"(leave out --kinds) or choose another --out")
    for a in others:
        for rel in _package_files(a):  # the old manifest's paths are not trusted
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise UserError(f"{out_dir}/manifest.json lists {rel!r} outside its folder: re-export every family")
        if a.get("status") != "failed":
            _check_kept_files(old, a, kinds)
    return others


def _check_kept_files(old, rec: dict, kinds: list[str]) -> None:
    """Every file a kept record carries into the new folder (a C entry: its whole package, the Arduino
    sources and quant.json too), against its sha256 in the old manifest, whatever the record's status:
    a damaged file is refused here, never carried over and hashed afresh into the new manifest."""
    sums = dict((rec.get("c") or {}).get("file_sha256") or {})
    if rec.get("file"):
        sums[rec["file"]] = rec.get("sha256")
    redo = f"export every family (leave out --kinds {','.join(kinds)}) or restore the file"
    for rel in _package_files(rec):
        path = old.inside(rel)
        if not path.is_file():
            raise UserError(f"{path} ({rec.get('name')}) listed in {old.folder}/manifest.json is missing: {redo}")
        if not sums.get(rel) or M.file_sha256(path) != sums[rel]:
            raise UserError(f"{path} ({rec.get('name')}) differs from its sha256 in {old.folder}/manifest.json "
                            f"(modified or damaged since the export): {redo}")


def _package_files(rec: dict) -> list[str]:
    """A record's files relative to its artifact folder (a C entry: its whole package)."""
    return ([rec["file"]] if rec.get("file") else []) + list((rec.get("c") or {}).get("files") or [])


def copy_kept(records: list[dict], src: Path, dst: Path) -> None:
    """Copy the files of ``records`` (a C entry: its whole package) from ``src`` into ``dst``."""
    for rec in records:
        if rec.get("status") == "failed":  # (nothing to run: its files, unchecked, stay behind)
            continue
        for rel in _package_files(rec):  # (checked by kept_records)
            if (src / rel).is_file() and not (dst / rel).exists():
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / rel, dst / rel)


# -- the pipeline ---------------------------------------------------------------------------------
def export_artifacts(checkpoint, out_dir, *, task=None, kinds=None, progress=True, arch=None,
                     unrolled: bool = False, data=None) -> dict:
    """Export ``checkpoint`` to the artifact folder ``out_dir``; returns the manifest written there.

    ``task``/``arch``: when given, the checkpoint must match them. ``kinds``: families to export
    (subset of ``KINDS``; default all); over an existing folder of the same checkpoint the other
    families' artifacts are kept (``kept_records``). ``unrolled``: also the unrolled ONNX pair (slow to quantize).
    ``data``: a ``SequenceData`` to calibrate and verify on instead of the checkpoint's task (an
    imported Keras model has none: ``training.keras_import.synthetic_data``); recorded in the
    manifest's ``data``.
    """
    import torch
    from training.checkpoint import load_model
    from training.data import load_task_of
    from training.data.base import same_task

    torch.set_num_threads(1)
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if checkpoint.is_dir():
        checkpoint = checkpoint / "model.safetensors"
    kinds = check_kinds(kinds)
    spec = inspect_checkpoint(checkpoint)
    if arch is not None and spec["arch"] != arch:
        raise UserError(f"checkpoint {checkpoint} is a {spec['arch']} model, not {arch}: "
                        f"pass --arch {spec['arch']} or the {arch} checkpoint")
    check_dependencies(kinds)
    check_output(out_dir)
    kept = kept_records(out_dir, kinds, checkpoint)
    model, meta = load_model(checkpoint)
    check_meta(meta, checkpoint)
    model.eval()
    trained_on = meta.get("task")
    if task is not None and trained_on is not None and not same_task(trained_on, task):
        raise UserError(f"checkpoint {checkpoint} was trained on task {trained_on!r}, not {task!r}: "
                        f"pass --task {trained_on} or the {task} checkpoint")
    given_data = data is not None
    data = data if given_data else load_task_of(meta, task)  # with the options it was trained on

    from export.verify import reference_for
    reference = reference_for(model, meta, data)

    # what a killed export of this folder left beside it (its build folder, or the previous version
    # after the swap); only ones untouched for a day (atomic.STALE_AFTER_S), so a running export's stay
    atomic.remove_stale(out_dir.parent, out_dir.name, (".tmp-*", ".old-*", ".probe-*"))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the folder is for sharing
        records: list[dict] = []
        skipped: list[dict] = []
        if "onnx" in kinds:
            from export.onnx_export import export_onnx
            records += _run_family("onnx", lambda *a: export_onnx(*a, unrolled=unrolled), model, meta, data, tmp, progress)
        if "tflite" in kinds:
            fn = _optional_exporter("export.tflite_export", "export_tflite")
            if fn is None:
                skipped.append({"family": "tflite", "reason": "export/tflite_export.py is not in this checkout"})
            else:
                records += _run_family("tflite", fn, model, meta, data, tmp, progress)
        if "c" in kinds:
            fn = _optional_exporter("export.c", "export_c")
            if fn is None:
                skipped.append({"family": "c", "reason": "export/c is not in this checkout"})
            else:
                records += _run_family("c", fn, model, meta, data, tmp)
        _judge_records(records)
        copy_kept(kept, out_dir, tmp)
        records += kept
        M.finalize(records, tmp)
        golden = M.write_golden(tmp, reference)
        manifest = M.build(checkpoint=checkpoint, model=model, meta=meta, reference=reference,
                           golden=golden, records=records)
        manifest["kinds"] = [k for k in KINDS if k in kinds or any(r.get("format") == k for r in kept)]
        if given_data:
            manifest["data"] = {"name": data.name, **data.info,
                                "splits": {s: int(len(getattr(data, f"y_{s}"))) for s in ("train", "val", "test")},
                                "used_for": "int8 calibration (train split), verification and golden samples (test split)"}
        if skipped:
            manifest["skipped"] = skipped
        # a family that failed part-way may leave files no record lists: dropped, so that the folder holds
        # just what its manifest lists (all that check_output lets a later export replace)
        for rel in _unlisted(tmp, manifest):
            if rel.endswith("/"):
                shutil.rmtree(tmp / rel)
            else:
                (tmp / rel).unlink()
        M.write(tmp, manifest)
        swap_in(tmp, out_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if M.out_of_room(e):
            raise UserError(f"cannot write the artifacts to {out_dir}: {e.strerror}; free space or choose "
                            f"another --out") from None
        raise
    return manifest
