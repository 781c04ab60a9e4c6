"""A Raspberry Pi bundle checked whole before deploy sends it: every file of the folder against its
SHA256SUMS (and none unlisted), and the tarball holding exactly those files with the same hashes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tarfile
import zlib
from pathlib import Path

from devices.rpi.bundle import SUMS, Bundle, parse_sums
from runtime.errors import UserError
from runtime.manifest import sha256_of

def verify_bundle(b: Bundle) -> tuple[Bundle, bytes]:
    """Every file of the bundle folder against its SHA256SUMS (and none unlisted), and the tarball
    holding exactly those files with the same hashes (its members read, nothing extracted).

    Returns the bundle with the sha256 of the tarball bytes read here (the Pi compares the upload
    with it, so a tarball changed after this check is refused there) and BUNDLE.json from the
    verified bytes, and the verified requirements.txt (it names the venv on the Pi).
    """
    rebuild = "rebuild the bundle with `invoke bundle`; nothing was sent"
    try:
        sums_bytes = (b.folder / SUMS).read_bytes()
        listed = parse_sums(sums_bytes, b.folder / SUMS, rebuild)
        kept = {"BUNDLE.json": b"", "requirements.txt": b""}  # read once: these bytes are hashed and used
        if absent := [rel for rel in kept if rel not in listed]:
            raise UserError(f"the bundle's {SUMS} does not list {absent[0]}: {rebuild}")
        found = set()
        for path in sorted(b.folder.rglob("*")):
            rel = path.relative_to(b.folder).as_posix()
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise UserError(f"{path} is a link or a special file, which a bundle never holds: {rebuild}")
            if path.is_dir() or rel == SUMS:
                continue
            if rel not in listed:
                raise UserError(f"{path} is not listed in the bundle's {SUMS} (added after the build?): {rebuild}")
            if rel in kept:
                kept[rel] = path.read_bytes()
            digest = hashlib.sha256(kept[rel]).hexdigest() if rel in kept else sha256_of(path)
            if digest != listed[rel]:
                raise UserError(f"{path} differs from its sha256 in {SUMS} (changed after the build): {rebuild}")
            found.add(rel)
        missing = sorted(set(listed) - found)
        if missing:
            raise UserError(f"{b.folder / missing[0]} is listed in {SUMS} but missing: {rebuild}")
        tar_sha, members = _tarball_hashes(b.tarball, b.folder.name, rebuild)
    except OSError as e:
        raise UserError(f"cannot read the bundle {b.folder} ({e.strerror or e}): {rebuild}") from None
    want = dict(listed, **{SUMS: hashlib.sha256(sums_bytes).hexdigest()})
    for rel in sorted(set(want) | set(members)):
        if members.get(rel) != want.get(rel):
            why = ("is missing from it" if rel not in members else "is in it but not in the folder" if rel not in want
                   else "differs in it from the folder's")
            raise UserError(f"{b.tarball} was not built from the folder {b.folder}: {rel} {why}: {rebuild}")
    try:
        info = json.loads(kept["BUNDLE.json"])
    except ValueError as e:
        raise UserError(f"{b.folder}/BUNDLE.json is damaged ({e}): {rebuild}") from None
    return dataclasses.replace(b, sha256=tar_sha, info=info), kept["requirements.txt"]


def _tarball_hashes(tarball: Path, name: str, rebuild: str) -> tuple[str, dict[str, str]]:
    """(sha256 of the tarball, {path below ``name/``: sha256} of its files), in one streaming read."""
    members: dict[str, str] = {}
    with open(tarball, "rb") as raw:
        reader = _HashingReader(raw)
        try:
            with tarfile.open(fileobj=reader, mode="r|gz") as tar:
                for m in tar:
                    if m.name == name and m.isdir():
                        continue
                    rel = m.name[len(name) + 1:] if m.name.startswith(name + "/") else None
                    if rel is None or ".." in rel.split("/") or not (m.isdir() or m.isfile()) or rel in members:
                        raise UserError(f"{tarball} holds {m.name!r}, which a bundle tarball of {name} never does: "
                                        f"{rebuild}")
                    if m.isfile():
                        h, f = hashlib.sha256(), tar.extractfile(m)
                        for block in iter(lambda: f.read(1 << 20), b""):
                            h.update(block)
                        members[rel] = h.hexdigest()
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise UserError(f"{tarball} is damaged ({type(e).__name__}: {e}): {rebuild}") from None
        while reader.read(1 << 20):  # the rest (end of archive, gzip trailer), so the digest is of the whole file
            pass
        return reader.sha256.hexdigest(), members


class _HashingReader:
    """A file that hashes every byte read from it: the digest is of exactly the bytes checked."""

    def __init__(self, raw):
        self.raw, self.sha256 = raw, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        return data
