"""A Raspberry Pi bundle: everything the Pi needs to run the models, as a folder and a tarball.

    <name>/
      BUNDLE.json          what is inside: artifact folders and entries, requirements, target
      SHA256SUMS           sha256 of every other file (``sha256sum --check`` format), checked on the Pi
      requirements.txt     pinned numpy / onnxruntime / ai-edge-litert for CPython 3.11 aarch64
      runtime/             the on-device runtime package (numpy + the backend libraries)
      artifacts/<folder>/  manifest.json (only the chosen entries, their sha256 kept), golden.npz,
                           the chosen model files
      wheels/              optional: the aarch64 wheels, for a Pi without network

The tarball ``<name>.tar.gz`` is reproducible (sorted members, fixed times and owners), so its
sha256 names its content. Every model file is checked against its manifest sha256 before it is
copied: a bundle never ships a file the export did not write.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zlib
from datetime import datetime, timezone
from pathlib import Path

from devices.rpi.cross import add_pi_libraries, cross_compiler_missing
from devices.rpi.pins import PI_PYTHON, PI_SUITE, REPO_ROOT, pi_requirements, pip_platform_args
from runtime import atomic
from runtime.atomic import swap_in
from runtime.errors import UserError
from runtime.manifest import Manifest, sha256_of

FORMAT = "rnn-edge-pi-bundle/1"
#: Runtimes a Raspberry Pi runs from a bundle, and the artifact formats each of them opens. The C
#: backend gets the generated C with its library built here for aarch64 (devices/rpi/cross.py).
PI_RUNTIMES = {"onnxruntime": ("onnx",), "litert": ("tflite",), "c": ("c",)}
DEFAULT_RUNTIMES = ("onnxruntime", "litert", "c")
SUMS = "SHA256SUMS"


@dataclasses.dataclass(frozen=True)
class Bundle:
    folder: Path  # the bundle folder
    tarball: Path  # <folder>.tar.gz
    sha256: str  # of the tarball
    info: dict  # BUNDLE.json

    @property
    def name(self) -> str:
        return self.folder.name


def select_entries(man: Manifest, names: list[str] | None, runtimes: tuple[str, ...]) -> list[tuple[dict, str]]:
    """(entry, runtime) pairs to ship: the named entries, else every ``ok`` entry for a Pi runtime."""
    picked = []
    if names:
        for name in names:
            entry = man.by_name(name)
            runtime = entry.get("runtime") if entry.get("runtime") in runtimes else None
            if runtime is None:  # (tflm-int8: the Pi would be told TFLite Micro, which it does not have)
                same = [a["name"] for a in man.artifacts if a.get("file") == entry.get("file")
                        and a.get("runtime") in runtimes and a is not entry]
                hint = f"its file runs on the Pi as {' or '.join(same)}: pass that" if same else \
                    f"choose onnx, tflite or c artifacts ({', '.join(runtimes)})"
                raise UserError(f"artifact {name!r} ({entry.get('format')}, {entry.get('runtime')}) has no runtime on "
                                f"the Pi: {hint}")
            if entry.get("status", "ok") != "ok":
                raise UserError(f"artifact {name!r} has status {entry.get('status')!r}: it cannot be deployed; "
                                f"re-export it or choose another")
            picked.append((entry, runtime))
    else:
        for entry in man.artifacts:
            runtime = entry.get("runtime") if entry.get("runtime") in runtimes else None
            if runtime and entry.get("status", "ok") == "ok":
                picked.append((entry, runtime))
    return picked


def c_companions(entry: dict) -> list[str]:
    """Files a C entry's source needs beside it (its header), relative to the artifact folder."""
    header = (entry.get("c") or {}).get("header") if entry.get("format") == "c" else None
    return [str(Path(entry["file"]).parent / header)] if header else []


def _copy_runtime_package(dest: Path) -> None:
    src = REPO_ROOT / "runtime"
    shutil.copytree(src, dest / "runtime", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))


def _add_artifacts(folder: Path, dest: Path, names: list[str] | None, runtimes: tuple[str, ...]) -> list[dict]:
    """Copy one artifact folder's chosen, verified files into ``dest``; returns what was shipped."""
    man = Manifest.read(folder)
    picked = select_entries(man, names, runtimes)
    if names:  # the other kind (sequence <-> step) of a named entry comes along, so streaming works too
        for entry, runtime in list(picked):
            other = man.companion(entry, "step" if entry.get("kind", "sequence") == "sequence" else "sequence",
                                  runtime, PI_RUNTIMES[runtime])
            if other is not None and all(other is not e for e, _ in picked):
                picked.append((other, runtime))
    if not picked:
        listing = ", ".join(f"{a.get('name')} ({a.get('runtime')}, {a.get('status', 'ok')})" for a in man.artifacts)
        raise UserError(f"{folder} has no artifact the Pi can run ({', '.join(runtimes)}): it has {listing or 'none'}")
    dest.mkdir(parents=True)
    golden = man.golden_path()  # verified against the manifest
    shutil.copy2(golden, dest / golden.name)
    for entry, _ in picked:
        src = man.verified(entry)  # the file, and a C entry's header
        for rel in [entry["file"]] + c_companions(entry):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src.parent / Path(rel).name, target)
    chosen = {id(e) for e, _ in picked}
    data = dict(man.data)
    data["artifacts"] = [dict(a) for a in man.artifacts if id(a) in chosen]
    add_pi_libraries(dest, data["artifacts"])  # C entries: their aarch64 library, sha256 in the entry
    atomic.write_json(dest / "manifest.json", data)
    return [{"name": e.get("name"), "file": e["file"], "runtime": r, "format": e.get("format"),
             "precision": e.get("precision"), "kind": e.get("kind", "sequence")} for e, r in picked]


def download_wheels(requirements: list[str], dest: Path) -> None:
    """The aarch64 CPython 3.11 wheels of ``requirements`` and their dependencies, for an offline Pi."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--dest", str(dest),
           *pip_platform_args(), *requirements]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"downloading the aarch64 wheels failed: {tail}; check the network or leave out --wheels")


def write_sums(folder: Path) -> None:
    """SHA256SUMS over every file of the bundle but itself (paths relative, sorted)."""
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SUMS):
        lines.append(f"{sha256_of(path)}  {path.relative_to(folder).as_posix()}\n")
    atomic.write_text(folder / SUMS, "".join(lines))


def parse_sums(data: bytes, path: Path, rebuild: str) -> dict[str, str]:
    """{relative path: sha256} of a SHA256SUMS file as ``write_sums`` writes it; one line (ending in
    ``rebuild``, what to do) for any other line."""
    listed = {}
    for lineno, line in enumerate(data.decode(errors="replace").splitlines(), 1):
        digest, sep, rel = line.partition("  ")
        parts = rel.split("/")
        if (not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or rel in listed
                or rel.startswith("/") or "" in parts or "." in parts or ".." in parts):
            raise UserError(f"{path} line {lineno} is not '<sha256>  <relative path>' (or repeats a path): {rebuild}")
        listed[rel] = digest
    return listed


def write_tarball(folder: Path, tarball: Path) -> str:
    """A reproducible .tar.gz of ``folder`` (members under ``<folder name>/``); returns its sha256."""
    data = tarball_bytes(folder, folder.name)
    atomic.write_bytes(tarball, data)
    return hashlib.sha256(data).hexdigest()


def tarball_bytes(folder: Path, name: str) -> bytes:
    """The bytes of a reproducible .tar.gz of ``folder``, its members under ``<name>/``."""
    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
        return info

    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in [folder] + sorted(folder.rglob("*")):
                tar.add(path, arcname=(Path(name) / path.relative_to(folder)).as_posix(), recursive=False,
                        filter=clean)
    return buf.getvalue()


def make_bundle(artifact_folders, out_dir="dist/rpi", name: str = "rnn-edge-pi", artifacts: list[str] | None = None,
                runtimes=DEFAULT_RUNTIMES, wheels: bool = False) -> Bundle:
    """Build ``out_dir/<name>/`` and ``out_dir/<name>.tar.gz`` from artifact folders.

    ``artifacts`` names manifest entries to ship (default: every ``ok`` entry of a Pi runtime);
    ``runtimes``: which of onnxruntime / litert / c the Pi gets (c: the generated C, with its library
    cross-compiled here for aarch64); ``wheels``: also ship the aarch64 wheels (needs the network now,
    none on the Pi). Only a bundle built here is replaced, the folder and tarball together once both are
    written.
    """
    runtimes = tuple(runtimes)
    bad = [r for r in runtimes if r not in PI_RUNTIMES]
    if bad or not runtimes:
        raise UserError(f"runtime(s) {', '.join(bad) or '(none)'} cannot run on the Pi: choose from {', '.join(PI_RUNTIMES)}")
    if "c" in runtimes and (why := cross_compiler_missing()):
        raise UserError(f"the C runtime's library for the Pi cannot be built: {why}; "
                        f"or leave c out (--runtimes onnxruntime,litert)")
    folders = [Path(f) for f in ([artifact_folders] if isinstance(artifact_folders, (str, os.PathLike))
                                 else artifact_folders)]
    if not folders:
        raise UserError("no artifact folder given: pass one written by `invoke export`")
    labels = [f.resolve().name for f in folders]
    if len(set(labels)) != len(labels):
        raise UserError(f"artifact folders must have distinct names, got {', '.join(labels)}: rename or copy one")
    out_dir = Path(out_dir)
    final, tarball = out_dir / name, out_dir / f"{name}.tar.gz"
    _check_output(out_dir, name, final, tarball)
    # the new folder and tarball are built under temporary names and swapped in only when both are
    # complete: a failed write (disk full, quota) leaves the previous pair as it was
    partial = out_dir / f".{name}.partial-{os.getpid()}"
    partial_tar = out_dir / f".{name}.tar.gz.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
        shipped = {}
        for folder, label in zip(folders, labels):
            wanted = None
            if artifacts:
                man = Manifest.read(folder)
                wanted = [a for a in artifacts if a in man.names()]
                if not wanted:
                    continue
            shipped[label] = _add_artifacts(folder, partial / "artifacts" / label, wanted, runtimes)
        if artifacts:
            found = {e["name"] for entries in shipped.values() for e in entries}
            missing = [a for a in artifacts if a not in found]
            if missing:
                raise UserError(f"no artifact named {', '.join(missing)} in {', '.join(map(str, folders))}: the "
                                f"names are the 'name' fields of each folder's manifest.json")
        used = sorted({e["runtime"] for entries in shipped.values() for e in entries})
        requirements = pi_requirements(used)
        (partial / "requirements.txt").write_text(
            f"# rnn-edge on Raspberry Pi OS 64-bit ({PI_SUITE}, CPython {PI_PYTHON}, aarch64)\n"
            + "".join(r + "\n" for r in requirements))
        _copy_runtime_package(partial)
        if wheels:
            download_wheels(requirements, partial / "wheels")
        info = {
            "format": FORMAT, "name": name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "target": {"os": f"Raspberry Pi OS 64-bit (Debian {PI_SUITE})", "python": PI_PYTHON, "machine": "aarch64"},
            "requirements": requirements, "wheels": bool(wheels),
            "artifacts": shipped,
        }
        atomic.write_json(partial / "BUNDLE.json", info)
        write_sums(partial)
        data = tarball_bytes(partial, name)
        _write_synced(partial_tar, data)
        # two renames, which need no space; the tarball first, as it can be rebuilt from the folder.
        # A folder and a tarball that do not match are refused by load_bundle
        os.replace(partial_tar, tarball)
        swap_in(partial, final)  # also syncs out_dir, so both renames last
    except OSError as e:
        raise UserError(f"cannot write the bundle to {out_dir}: {e.strerror or e}; free space or choose another "
                        f"--out") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        partial_tar.unlink(missing_ok=True)
    return Bundle(final, tarball, hashlib.sha256(data).hexdigest(), info)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _check_output(out_dir: Path, name: str, final: Path, tarball: Path) -> None:
    """A plain bundle name, and an output folder where the bundle folder and tarball can be written,
    replacing only a bundle this tool built there."""
    if not name or Path(name).name != name or name.startswith(".") or name.endswith(".tar.gz"):
        raise UserError(f"bundle name {name!r} must be a plain file name (no '/', not starting with '.'), "
                        f"e.g. rnn-edge-pi")
    if final.exists() or final.is_symlink():
        if why := _not_a_bundle(final):
            raise UserError(f"{final} is not a bundle built by `invoke bundle` ({why}), so it is not replaced: "
                            f"choose another --out or --name, or move that folder")
    if tarball.is_dir():
        raise UserError(f"{tarball} is a folder, not a tarball: remove it or choose another --name")
    if tarball.exists() and not _is_bundle_tarball(tarball, name):
        raise UserError(f"{tarball} is not a bundle tarball built by `invoke bundle`, so it is not replaced: "
                        f"choose another --out or --name, or move that file")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {out_dir} ({e.strerror or type(e).__name__}): "
                        f"choose another with --out") from None
    if not os.access(out_dir, os.W_OK):
        raise UserError(f"cannot write to the output folder {out_dir}: choose another with --out")


def _not_a_bundle(folder: Path) -> str | None:
    """Why ``folder`` may not be replaced by a new bundle (None: it is a bundle of ours, every file in
    it listed in its SHA256SUMS, so nothing of the user's is lost)."""
    if folder.is_symlink() or not folder.is_dir():
        return "it is not a folder"
    try:
        info = json.loads((folder / "BUNDLE.json").read_bytes())
        listed = set(parse_sums((folder / SUMS).read_bytes(), folder / SUMS, ""))
    except (OSError, ValueError, UserError):
        return f"it lacks a readable BUNDLE.json or {SUMS}"
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        return f"its BUNDLE.json is not of format {FORMAT}"
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
             if not p.is_dir() and "__pycache__" not in p.parts}  # (Python's own caches are not the user's)
    extra = sorted(files - listed - {SUMS})
    if extra:
        return f"it holds {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}, not part of the bundle"
    return None


def _is_bundle_tarball(tarball: Path, name: str) -> bool:
    """``tarball`` holds ``<name>/BUNDLE.json`` of our format: one this tool wrote."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.extractfile(f"{name}/BUNDLE.json")  # None: not a file
            info = json.loads(member.read()) if member else None
    except (tarfile.TarError, OSError, EOFError, zlib.error, KeyError, ValueError):
        return False
    return isinstance(info, dict) and info.get("format") == FORMAT


def load_bundle(path) -> Bundle:
    """A bundle already built: its folder or its tarball (the other is found beside it)."""
    path = Path(path)
    if path.is_file() and path.name.endswith(".tar.gz"):
        folder = path.with_name(path.name[: -len(".tar.gz")])
        tarball = path
    else:
        folder, tarball = path, path.with_name(path.name + ".tar.gz")
    if not (folder / "BUNDLE.json").is_file() or not tarball.is_file():
        raise UserError(f"{path} is not a Pi bundle (needs <name>/BUNDLE.json and <name>.tar.gz): "
                        f"build one with `invoke bundle`")
    text = (folder / "BUNDLE.json").read_bytes()
    try:
        info = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{folder}/BUNDLE.json is damaged ({e}): rebuild the bundle with `invoke bundle`") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        got = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise UserError(f"{folder}/BUNDLE.json has format {got!r}, expected {FORMAT!r}: rebuild it")
    _check_pair(folder, tarball, text)
    return Bundle(folder, tarball, sha256_of(tarball), info)


def _check_pair(folder: Path, tarball: Path, bundle_json: bytes) -> None:
    """The tarball reads back whole (gzip's CRC checks every byte) and is the one built with this folder:
    its BUNDLE.json and SHA256SUMS equal the folder's."""
    want = {"BUNDLE.json": bundle_json, SUMS: (folder / SUMS).read_bytes() if (folder / SUMS).is_file() else None}
    got = {}
    try:
        raw = gzip.decompress(tarball.read_bytes())  # the whole stream, so its CRC is checked
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                f = tar.extractfile(member) if member.isfile() else None
                data = f.read() if f else b""
                if member.name in (f"{folder.name}/BUNDLE.json", f"{folder.name}/{SUMS}"):
                    got[member.name.split("/", 1)[1]] = data
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise UserError(f"{tarball} is damaged ({type(e).__name__}: {e}): rebuild the bundle with `invoke bundle`") from None
    if got != want:
        raise UserError(f"{tarball} was not built with the folder {folder} beside it (their BUNDLE.json or "
                        f"{SUMS} differ): rebuild the bundle with `invoke bundle`")
