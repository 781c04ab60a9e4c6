"""The emulated Raspberry Pi as a parity device: the same artifacts on aarch64 and on this x86 host.

ONNX Runtime and LiteRT ship different kernels per CPU (NEON on the Pi, AVX on x86), so the same
artifact file can give slightly different scores on each. ``aarch64_parity(folder)`` runs every
ONNX / TFLite / C artifact of a folder on the emulated Pi 4 (devices/rpi/emulated_root.py, one
emulated process for all of them; C libraries cross-compiled here, devices/rpi/cross.py) and on
the host, on the same inputs, and judges each pair:

- integer outputs (int8 with an output scale): at most ``MAX_LSB`` = 1 LSB apart; the generated
  C's integer outputs exactly equal (NEON on the Pi, SSE2 on x86: the same integer model);
- float outputs: at most the float32 tolerance of runtime/tolerances.py apart (``max|a - b|``).

``PiScores`` is the building block for the parity suite: ``PiScores(folder).scores(names, x_raw)``
-> {name: scores} computed on the Pi (whole-sequence entries [N, K], step entries [N, T, K]),
cached per input so that one emulated run serves every cell of a folder.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np

from devices.rpi.bundle import PI_RUNTIMES, c_companions
from devices.rpi.cross import add_pi_libraries, cross_compiler_missing
from devices.rpi.emulated_root import EmulatedPi, emulated_pi
from devices.rpi.pins import REPO_ROOT
from runtime.atomic import write_json
from runtime.cache import private_dir
from runtime.errors import UserError
from runtime.manifest import Manifest, output_scale
from runtime.tolerances import abs_limit, tolerance_for

MAX_LSB = 1
DEVICE = "rpi4-emulated"  # how the Pi cells call their device: aarch64 Cortex-A72 under qemu-user
PI_SCRIPT = Path(__file__).with_name("pi_scores.py")


def pi_entries(man: Manifest, runtimes=tuple(PI_RUNTIMES)) -> list[dict]:
    """Manifest entries the Pi runs: status ok, made for ONNX Runtime, LiteRT or the C backend (not
    TFLite Micro's)."""
    return [a for a in man.artifacts if a.get("status", "ok") == "ok" and a.get("runtime") in runtimes]


def not_runnable_here(entry: dict) -> str | None:
    """Why this entry cannot be put on the emulated Pi from this machine (the C without the aarch64
    cross compiler to build its library), or None."""
    return cross_compiler_missing() if entry.get("runtime") == "c" else None


def max_lsb(entry: dict) -> int:
    """How many LSBs an integer output may move between aarch64 and x86: none for the generated C."""
    return 0 if entry.get("runtime") == "c" else MAX_LSB


class PiScores:
    """Scores of one artifact folder's entries computed on the emulated Pi (see module docstring).

    The folder's manifest, golden file, ONNX/TFLite files and the ``runtime`` package are copied
    into the Pi's home once; ``close()`` (or ``with``) deletes that copy.
    """

    def __init__(self, folder, pi: EmulatedPi | None = None, progress: bool = False):
        self.folder = Path(folder)
        self.manifest = Manifest.read(self.folder)
        base = private_dir("parity")
        pi = pi or emulated_pi(progress=progress)  # first: a Pi that cannot be had leaves no work folder
        self.work = Path(tempfile.mkdtemp(prefix="pi-", dir=base))
        self.pi = pi.with_state(self.work / "state")
        self._cache: dict[str, dict[str, np.ndarray]] = {}
        self._staged = False

    def _stage(self) -> None:
        home = self.pi.host_path("/home/pi")
        shutil.copytree(REPO_ROOT / "runtime", home / "runtime",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy2(PI_SCRIPT, home / PI_SCRIPT.name)
        dest = home / "artifacts"
        dest.mkdir()
        entries = [e for e in pi_entries(self.manifest) if not not_runnable_here(e)]
        # checked files only (security re-audit: a symlinked entry or golden file copied a host file here)
        files = {e["file"]: self.manifest.verified(e) for e in entries}
        files.update({rel: self.manifest.inside(rel) for e in entries for rel in c_companions(e)})  # checked by verified()
        golden = (self.manifest.data.get("golden") or {}).get("file")
        if golden:
            files[golden] = self.manifest.golden_path()
        for rel, src in sorted(files.items()):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
        data = dict(self.manifest.data)
        data["artifacts"] = [dict(a) for a in self.manifest.artifacts]
        add_pi_libraries(dest, [a for a in data["artifacts"] if a in entries])  # as a bundle ships C
        write_json(dest / "manifest.json", data)
        self._staged = True

    def scores(self, names: list[str], x_raw: np.ndarray, timeout: float = 600) -> dict[str, np.ndarray]:
        """{name: scores on the Pi} for the manifest entries ``names``; ``error:<name>`` if one failed."""
        x_raw = np.ascontiguousarray(x_raw, dtype=np.float32)
        key = hashlib.sha256(x_raw.tobytes() + repr(x_raw.shape).encode()).hexdigest()
        have = self._cache.setdefault(key, {})
        todo = [n for n in names if n not in have and f"error:{n}" not in have]
        if todo:
            if not self._staged:
                self._stage()
            home = self.pi.host_path("/home/pi")
            np.savez(home / "inputs.npz", x_raw=x_raw)
            proc = self.pi.run(["/usr/bin/python3", f"/home/pi/{PI_SCRIPT.name}", "/home/pi/artifacts",
                                "/home/pi/inputs.npz", "/home/pi/outputs.npz", *todo], timeout=timeout, check=False)
            if proc.returncode != 0 or not (home / "outputs.npz").is_file():
                err = proc.stderr.decode(errors="replace").strip().splitlines()
                raise UserError(f"scoring on the emulated Pi failed (exit {proc.returncode}): "
                                f"{err[-1] if err else 'no output'}")
            with np.load(home / "outputs.npz", allow_pickle=False) as out:
                have.update({k: out[k] for k in out.files})
            (home / "outputs.npz").unlink()
        return {k: v for k, v in have.items() if k in names or k.removeprefix("error:") in names}

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> PiScores:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def host_scores(folder, names: list[str], x_raw: np.ndarray) -> dict[str, np.ndarray]:
    """The same computation as on the Pi (pi_scores.py), on this host."""
    from devices.rpi.pi_scores import scores_of
    out = {}
    for name in names:
        try:
            out[name] = scores_of(str(folder), name, np.asarray(x_raw, np.float32))
        except UserError as e:
            out[f"error:{name}"] = np.array(str(e))
    return out


def judge_pair(entry: dict, on_pi: np.ndarray, on_host: np.ndarray) -> dict:
    """One artifact's aarch64-vs-x86 verdict: integer outputs within 1 LSB, float within float32 tolerance."""
    diff = float(np.max(np.abs(on_pi.astype(np.float64) - on_host.astype(np.float64)))) if on_pi.size else 0.0
    scale = output_scale(entry)
    out = {"max_abs_diff": diff,
           "top1_agreement": float(np.mean(on_pi.argmax(-1) == on_host.argmax(-1))) if on_pi.size else 1.0}
    if scale:
        lsb = int(np.round(diff / scale))
        out.update(rule=f"<= {max_lsb(entry)} LSB of the output scale {scale:.4g}", lsb=lsb, passed=lsb <= max_lsb(entry))
    else:
        peak = float(np.max(np.abs(on_host))) if on_host.size else 0.0
        limit = abs_limit(tolerance_for("float32"), peak)
        out.update(rule=f"max|aarch64 - x86| <= {limit:.3g} (float32 tolerance at peak |score| {peak:.3g})",
                   limit=limit, passed=diff <= limit)
    return out


def aarch64_parity(folder, names: list[str] | None = None, x_raw: np.ndarray | None = None,
                   pi: EmulatedPi | None = None, progress: bool = False) -> list[dict]:
    """Each ONNX / TFLite / C artifact of ``folder`` on the emulated Pi vs this host; one dict per artifact.

    ``x_raw`` defaults to the folder's golden inputs. Dict keys: artifact, runtime, precision, kind,
    device, passed, rule, max_abs_diff, top1_agreement, lsb (integer outputs) or limit, error.
    """
    man = Manifest.read(folder)
    entries = [e for e in pi_entries(man) if names is None or e["name"] in names]
    if names:
        unknown = set(names) - {e["name"] for e in entries}
        if unknown:
            raise UserError(f"no ONNX/TFLite/C artifact named {', '.join(sorted(unknown))} in {folder}: "
                            f"choose from {', '.join(e['name'] for e in pi_entries(man))}")
    if x_raw is None:
        x_raw = man.golden("x_raw")["x_raw"]  # sha256-checked; damage is one line
    wanted = [e["name"] for e in entries if not not_runnable_here(e)]
    with PiScores(folder, pi=pi, progress=progress) as session:  # first: an unusable cache folder is found now
        host = host_scores(folder, wanted, x_raw)
        on_pi = session.scores(wanted, x_raw)
    results = []
    for e in entries:
        name = e["name"]
        row = {"artifact": name, "runtime": e.get("runtime"), "precision": e.get("precision"),
               "kind": e.get("kind", "sequence"), "device": DEVICE}
        err = on_pi.get(f"error:{name}", host.get(f"error:{name}"))
        why = not_runnable_here(e)
        if why:  # reported as not passed, never left out
            row.update(passed=False, error=f"not run: {why}")
        elif err is not None:
            side = "aarch64" if f"error:{name}" in on_pi else "x86"
            row.update(passed=False, error=f"{side}: {err}")
        else:
            row.update(judge_pair(e, on_pi[name], host[name]), error=None)
        results.append(row)
    return results

