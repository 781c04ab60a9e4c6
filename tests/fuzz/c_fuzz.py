"""Fuzz the generated C (export/c) with random models, under AddressSanitizer and UBSan.

Two engines, same random models (``random_model``: LSTM/GRU, 1-3 layers, sizes within the
generator's limits, weights drawn at random scales):

- ``libfuzzer``: for each model, the int8 or float32 library is compiled with
  ``fuzz_target.c`` by clang (``-fsanitize=fuzzer,address,undefined``) and libFuzzer mutates the
  input frames for a bounded time (properties in fuzz_target.c). Needs ``apt-get install clang``.
- ``differential`` (gcc only): the file-driven harness (export/c/harness.py) built with
  ``-fsanitize=address,undefined`` runs random and extreme frames; its scores must equal the numpy
  reference bit for bit (int8) or within float rounding (float32). Used by the hypothesis test.

Command line (longer runs than CI's)::

    python tests/fuzz/c_fuzz.py --seconds 600 --models 20 --seed 1 [--workdir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from export.c import codegen  # noqa: E402
from export.c import quantize as Q  # noqa: E402
from runtime.errors import UserError  # noqa: E402

TARGET = Path(__file__).with_name("fuzz_target.c")
LIMITS = {"input_size": (1, 16), "layers": (1, 3), "hidden": (1, 40), "classes": (1, 12), "weight_scale": (0.05, 3.0)}
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]


def random_model(rng: np.random.Generator) -> dict:
    """Float weights ``fm`` (export/c/quantize.float_weights layout) of a random LSTM/GRU."""
    arch = str(rng.choice(["lstm", "gru"]))
    G = 4 if arch == "lstm" else 3
    c = int(rng.integers(LIMITS["input_size"][0], LIMITS["input_size"][1] + 1))
    hidden = [int(rng.integers(LIMITS["hidden"][0], LIMITS["hidden"][1] + 1))
              for _ in range(int(rng.integers(LIMITS["layers"][0], LIMITS["layers"][1] + 1)))]
    k = int(rng.integers(LIMITS["classes"][0], LIMITS["classes"][1] + 1))
    lo, hi = LIMITS["weight_scale"]
    scale = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    layers, n_in = [], c
    for h in hidden:
        w = lambda *shape: rng.normal(0, scale / math.sqrt(shape[-1]), shape)  # noqa: E731
        layers.append({"hidden": h, "w_ih": w(G * h, n_in), "w_hh": w(G * h, h),
                       "b_ih": rng.normal(0, scale, G * h), "b_hh": rng.normal(0, scale, G * h)})
        n_in = h
    return {"arch": arch, "input_size": c, "num_classes": k, "layers": layers,
            "head_w": rng.normal(0, scale / math.sqrt(n_in), (k, n_in)), "head_b": rng.normal(0, scale, k),
            "weight_scale": scale}


def describe(fm: dict) -> str:
    return (f"{fm['arch']} {fm['input_size']}->{'->'.join(str(L['hidden']) for L in fm['layers'])}->"
            f"{fm['num_classes']} (weights x{fm['weight_scale']:.2f})")


@dataclasses.dataclass
class Library:
    fm: dict
    precision: str
    prefix: str
    folder: Path
    qm: dict | None = None
    quant: dict | None = None


def generate(fm: dict, precision: str, folder: Path, rng: np.random.Generator, prefix: str = "fz") -> Library:
    """Write ``<prefix>.h/.c`` for ``fm``; int8 is calibrated on random normalized windows.

    Raises ``UserError`` when the int8 generator refuses the weights (``check_bounds``: an int32
    intermediate could overflow) - a correct outcome, not a finding.
    """
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{prefix}_{fm['arch']}_{precision}"
    if precision == "int8":
        X = rng.normal(0, float(rng.uniform(0.5, 3.0)), (16, 12, fm["input_size"]))
        quant = Q.calibrate(fm, X)
        qm = Q.quantize(fm, quant)
        src = codegen.generate_int8(qm, prefix)
    else:
        quant = qm = None
        src = codegen.generate_float(fm, prefix)
    (folder / src.header_name).write_text(src.header)
    (folder / src.source_name).write_text(src.source)
    return Library(fm, precision, src.prefix, folder, qm, quant)


def clang() -> str | None:
    return shutil.which("clang")


def build_fuzzer(lib: Library) -> Path:
    exe = lib.folder / f"fuzz_{lib.prefix}"
    cmd = [clang(), "-std=c99", "-O1", "-fsanitize=fuzzer", *SANITIZE, "-I", str(lib.folder),
           f"-DFUZZ_PREFIX={lib.prefix}", f'-DFUZZ_HEADER="{lib.prefix}.h"', f"-DFUZZ_INT8={int(lib.precision == 'int8')}",
           str(lib.folder / f"{lib.prefix}.c"), str(TARGET), "-o", str(exe), "-lm"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"clang build of the fuzz target failed: {p.stderr[-2000:]}")
    return exe


def seed_corpus(lib: Library, folder: Path) -> Path:
    """Extreme frames to start from: zeros, the int8 limits / float specials, a ramp."""
    folder.mkdir(parents=True, exist_ok=True)
    c = lib.fm["input_size"]
    if lib.precision == "int8":
        frames = [np.zeros((8, c), np.int8), np.full((8, c), 127, np.int8), np.full((8, c), -128, np.int8),
                  (np.arange(32 * c) % 256 - 128).astype(np.int8)]
    else:
        frames = [np.zeros((8, c), np.float32), np.full((4, c), 3e38, np.float32),
                  np.array([np.nan, np.inf, -np.inf, 1e-45] * c, np.float32), np.linspace(-50, 50, 16 * c, dtype=np.float32)]
    for i, f in enumerate(frames):
        (folder / f"seed{i}").write_bytes(bytes([i]) + f.tobytes())
    return folder


@dataclasses.dataclass
class FuzzResult:
    model: str
    precision: str
    seconds: float
    runs: int
    ok: bool
    detail: str


def libfuzz(lib: Library, seconds: float) -> FuzzResult:
    """Build and run libFuzzer on ``lib`` for ``seconds``; ``ok`` False with the report on any finding."""
    exe = build_fuzzer(lib)
    corpus = seed_corpus(lib, lib.folder / "corpus")
    max_len = 1 + 64 * lib.fm["input_size"] * (1 if lib.precision == "int8" else 4)
    cmd = [str(exe), f"-max_total_time={max(1, int(seconds))}", f"-max_len={max_len}", "-rss_limit_mb=2048",
           "-timeout=20", f"-artifact_prefix={lib.folder}/", "-print_final_stats=1", str(corpus)]
    t0 = time.perf_counter()
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, env=env)
    runs = 0
    for line in p.stderr.splitlines():
        if line.startswith("stat::number_of_executed_units:"):
            runs = int(line.split(":")[-1])
    bad = p.returncode != 0 or "ERROR: AddressSanitizer" in p.stderr or "runtime error:" in p.stderr
    crash = sorted(str(f) for f in lib.folder.glob("crash-*")) + sorted(str(f) for f in lib.folder.glob("leak-*"))
    summary = [ln for ln in p.stderr.splitlines() if "ERROR:" in ln or "SUMMARY:" in ln or "runtime error:" in ln
               or "deadly signal" in ln]
    detail = (f"exit {p.returncode}, reproducers {crash}: " + " | ".join(summary[:6]) + "\n" + p.stderr[-3000:]) \
        if bad else f"{runs} inputs"
    return FuzzResult(describe(lib.fm), lib.precision, time.perf_counter() - t0, runs, not bad, detail)


def fuzz_random_models(seconds: float, models: int, seed: int, workdir: Path, log=print) -> list[FuzzResult]:
    """``models`` random libraries (alternating int8 / float32), ``seconds`` shared among them."""
    rng = np.random.default_rng(seed)
    results: list[FuzzResult] = []
    per = seconds / models
    made = 0
    attempts = 0
    while made < models:
        attempts += 1
        if attempts > 20 * models:
            raise RuntimeError("the int8 generator refused almost every random model: check LIMITS")
        fm = random_model(rng)
        precision = ("int8", "float32")[made % 2]
        try:
            lib = generate(fm, precision, workdir / f"m{made}", rng)
        except UserError as e:  # check_bounds refused weights this large: a correct outcome
            log(f"skip {describe(fm)} {precision}: refused by the generator ({e})")
            continue
        r = libfuzz(lib, per)
        log(f"{'ok ' if r.ok else 'FOUND'} {r.model} {r.precision}: {r.runs} inputs in {r.seconds:.0f} s"
            + ("" if r.ok else f"\n{r.detail}"))
        results.append(r)
        made += 1
    return results


# --- differential engine (gcc + the file harness), used by the hypothesis test -------------------

def run_differential(lib: Library, x: np.ndarray, exe: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sanitized harness scores and the numpy reference's for frames ``x`` [n, steps, C] (stream mode)."""
    from export.c import build as HB
    from export.c import reference as R
    exe = exe or HB.build_harness(lib.folder, lib.prefix, lib.precision, lib.folder / "harness", sanitize=True, opt="-O1")
    got = HB.run_harness(exe, x, lib.precision, stream=True, workdir=lib.folder)
    got = got.reshape(x.shape[0], x.shape[1], -1)  # the harness drops the step axis when steps == 1
    if lib.precision == "int8":
        want = R.int_run(lib.qm, x, stream=True)
    else:
        want = R.float_run(lib.fm, x.astype(np.float32), stream=True).astype(np.float32)
    return got, want


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=600, help="total fuzzing time (default 600)")
    p.add_argument("--models", type=int, default=20, help="random models (default 20)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", default=None, help="where libraries, corpora and reproducers go (default: a temp dir)")
    args = p.parse_args(argv)
    if args.workdir:  # one line now, not a traceback when the first model is written
        try:
            Path(args.workdir).mkdir(parents=True, exist_ok=True)
            if not os.access(args.workdir, os.W_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as e:
            print(f"error: cannot use --workdir {args.workdir}: {e.strerror or e}; choose a folder you can write",
                  file=sys.stderr)
            return 2
    if clang() is None:
        print("error: clang is not installed: run `sudo apt-get install clang`", file=sys.stderr)
        return 2
    import tempfile
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rnn-edge-fuzz-"))
    results = fuzz_random_models(args.seconds, args.models, args.seed, workdir)
    found = [r for r in results if not r.ok]
    total = sum(r.runs for r in results)
    print(f"{len(results)} models, {total} inputs, {len(found)} findings -> {workdir}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
