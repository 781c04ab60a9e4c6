"""The device stage never loses data: `bundle` replaces only a bundle it built, a failed bundle write
leaves the previous folder and tarball as they were, and `firmware` leaves no work folder behind."""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from devices.cortex_m import report as RP
from devices.rpi.bundle import load_bundle, make_bundle
from runtime.errors import UserError

ONNX = ("onnxruntime",)  # no cross compiler needed


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _bundle_cli(src, out, name):
    return subprocess.run([sys.executable, "-m", "devices.rpi", "bundle", str(src), "--out", str(out), "--name", name,
                           "--runtimes", "onnxruntime"], capture_output=True, text=True)


def test_bundle_replaces_only_a_bundle_it_built(fixture_artifacts, tmp_path):
    """Black-box audit: `bundle --name watch-gru` over an artifact folder (or any folder) of that name
    replaced it with the bundle, exit 0."""
    src = fixture_artifacts("gru")
    out = tmp_path / "out"
    theirs = out / "watch-gru"
    shutil.copytree(src, theirs)
    (theirs / "thesis.txt").write_text("mine")
    before = _snapshot(theirs)
    r = _bundle_cli(src, out, "watch-gru")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"error: {theirs} is not a bundle built by `invoke bundle`")
    assert "choose another --out or --name, or move that folder" in r.stderr
    assert _snapshot(theirs) == before and sorted(p.name for p in out.iterdir()) == ["watch-gru"]

    # a bundle of ours with a file of the user's added is not replaced either; without it, it is
    b = make_bundle([src], out_dir=out, name="b", runtimes=ONNX)
    (b.folder / "runtime" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds runtime/notes.txt, not part of the bundle.*move that folder"):
        make_bundle([src], out_dir=out, name="b", runtimes=ONNX)
    (b.folder / "runtime" / "notes.txt").unlink()
    assert load_bundle(make_bundle([src], out_dir=out, name="b", runtimes=ONNX).folder).info["name"] == "b"

    # a tarball of that name that this tool did not write is kept too
    with tarfile.open(out / "c.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="c")
    data = (out / "c.tar.gz").read_bytes()
    with pytest.raises(UserError, match=r"c.tar.gz is not a bundle tarball built by `invoke bundle`"):
        make_bundle([src], out_dir=out, name="c", runtimes=ONNX)
    assert (out / "c.tar.gz").read_bytes() == data and not (out / "c").exists()


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """Writes past ``limit`` bytes fail with EFBIG, like under `ulimit -f` (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_failed_bundle_write_keeps_the_previous_bundle(fixture_artifacts, tmp_path):
    """Black-box audit: under `ulimit -f` the new folder was swapped in, then the tarball write failed with
    a traceback, leaving a folder and a tarball that no longer matched."""
    src = fixture_artifacts("gru")
    old = make_bundle([src], out_dir=tmp_path, runtimes=ONNX)
    folder, tarball = _snapshot(old.folder), old.tarball.read_bytes()
    largest = max(len(v) for v in folder.values())
    assert largest < len(tarball)  # so every file of the folder can be written, not the tarball
    with _file_size_limit(largest + 1), pytest.raises(UserError) as e:
        make_bundle([src], out_dir=tmp_path, runtimes=ONNX)
    assert str(e.value) == (f"cannot write the bundle to {tmp_path}: File too large; free space or choose "
                            f"another --out")
    assert _snapshot(old.folder) == folder and old.tarball.read_bytes() == tarball
    assert load_bundle(old.folder).sha256 == load_bundle(old.tarball).sha256 == old.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rnn-edge-pi", "rnn-edge-pi.tar.gz"]  # no temporaries


def _fw_leftovers(tmp):
    return sorted(p.name for p in tmp.glob("rnn-edge-fw-*"))


def test_firmware_removes_its_work_folder(monkeypatch, tmp_path):
    """Black-box audit: every `invoke firmware` left a /tmp/rnn-edge-fw-* folder (~1 MB), failed or not.
    Its own work folder goes when the run ends; one the caller gives (bench/mcu.py) is kept."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    with pytest.raises(UserError):
        RP.firmware("cortex-m4", artifacts=str(tmp_path / "no-such-folder"))
    assert _fw_leftovers(tmp) == []

    def fake_inputs(folder, precision, sequences, work_dir):
        (work_dir / "verified-c").mkdir(parents=True)
        return work_dir / "verified-c", "m", {}, np.zeros((1, 2, 3), np.float32)

    def fake_measure(lib_dir, prefix, precision, model, target, x, work_dir, opt, timeout):
        (work_dir / "m.elf").write_bytes(b"\x7fELF")
        return {"target": target.name}

    monkeypatch.setattr(RP, "c_library_and_inputs", fake_inputs)
    monkeypatch.setattr(RP, "measure", fake_measure)
    assert json.loads(RP.firmware("cortex-m4", artifacts="art", as_json=True)) == {"target": "cortex-m4"}
    assert _fw_leftovers(tmp) == []
    RP.firmware("cortex-m4", artifacts="art", as_json=True, work_dir=str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "m.elf").is_file()


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("arm-none-eabi-gcc", "qemu-system-arm", "gcc")),
                    reason="needs gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm, gcc")
def test_real_firmware_run_leaves_no_work_folder(fixture_artifacts, monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    rep = json.loads(RP.firmware("cortex-m4", artifacts=str(fixture_artifacts("gru")), sequences=1, as_json=True))
    assert rep["host_identical"] and _fw_leftovers(tmp_path) == []


@pytest.mark.parametrize("damage", ["no x", "cut short"])
def test_firmware_and_parity_read_a_damaged_golden_file_as_check_does(fixture_artifacts, tmp_path, damage):
    """A golden.npz re-signed in the manifest after damage: `check` and `bench` said so in one line
    (rows 21, 73), `invoke firmware` and `python -m parity` raised KeyError / BadZipFile tracebacks."""
    import hashlib
    import json
    import shutil

    import numpy as np

    from devices.cortex_m.report import c_library_and_inputs
    from parity.inputs import load_heldout
    from runtime.errors import UserError
    from runtime.manifest import Manifest
    folder = tmp_path / "art"
    shutil.copytree(fixture_artifacts("gru"), folder)
    golden = folder / "golden.npz"
    if damage == "no x":
        arrays = dict(np.load(golden))
        arrays.pop("x")
        arrays.pop("x_raw")
        np.savez(golden, **arrays)
    else:
        golden.write_bytes(golden.read_bytes()[: golden.stat().st_size // 2])
    man = json.loads((folder / "manifest.json").read_text())
    man["golden"]["sha256"] = hashlib.sha256(golden.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(man))
    for read in (lambda: c_library_and_inputs(folder, "int8", 2, work_dir=tmp_path / "w"),
                 lambda: load_heldout(Manifest.read(folder), test_split=False)):
        with pytest.raises(UserError, match=r"golden file .* (lacks x|cannot be read)") as e:
            read()
        assert "\n" not in str(e.value)
