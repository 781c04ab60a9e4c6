"""A test/benchmark ``main`` for a generated library: same file on the host and on Cortex-M.

It reads a binary input file, runs every sequence (whole sequence, or frame by frame keeping the
scores after every frame) and writes the scores to an output file. On Cortex-M the files are host
files reached through semihosting. ``bench_begin``/``bench_end`` bracket the first inference so an
instruction-counting QEMU plugin can measure exactly one.

Input file: int32 header ``[magic, n, steps, input_size, mode]`` (mode 0 = run, 1 = stream), then
``n * steps * input_size`` frames (int8 or float32). Output: int32 ``[magic, n, rows, classes]``
then the scores (int32 or float32), ``rows`` = 1 (run) or ``steps`` (stream).
"""

from __future__ import annotations

import numpy as np

MAGIC_IN = 0x52454931  # "REI1"
MAGIC_OUT = 0x52454F31  # "REO1"
MAX_STEPS = 4096


def harness_source(prefix: str, precision: str) -> str:
    P = prefix.upper()
    xt, st = ("int8_t", "int32_t") if precision == "int8" else ("float", "float")
    return f"""/* harness.c: run {prefix} over sequences read from a file; same code on the host and on Cortex-M.
 * usage: harness [input.bin [output.bin]] (Cortex-M: files and argv through semihosting) */
#include <stdint.h>
#include <stdio.h>

#include "{prefix}.h"

#define MAX_STEPS {MAX_STEPS}

static {xt} frames[MAX_STEPS * {P}_INPUT_SIZE];
static {st} scores[{P}_NUM_CLASSES];
static {prefix}_state state;

/* Markers for the instruction-counting plugin: it counts what runs between the two calls. */
__attribute__((noinline)) void bench_begin(void) {{ __asm__ volatile("" ::: "memory"); }}
__attribute__((noinline)) void bench_end(void) {{ __asm__ volatile("" ::: "memory"); }}

static int fail(const char *what) {{ printf("harness error: %s\\n", what); return 2; }}

int main(int argc, char **argv)
{{
    const char *in_path = argc > 1 ? argv[1] : "input.bin";
    const char *out_path = argc > 2 ? argv[2] : "output.bin";
    int32_t hdr[5], ohdr[4], n, t, k;
    FILE *fi = fopen(in_path, "rb"), *fo;
    if (!fi) return fail("cannot open input");
    if (fread(hdr, sizeof hdr, 1, fi) != 1 || hdr[0] != {MAGIC_IN:#x}) return fail("bad input header");
    if (hdr[2] < 1 || hdr[2] > MAX_STEPS || hdr[3] != {P}_INPUT_SIZE) return fail("input shape does not match the model");
    fo = fopen(out_path, "wb");
    if (!fo) return fail("cannot open output");
    ohdr[0] = {MAGIC_OUT:#x}; ohdr[1] = hdr[1]; ohdr[2] = hdr[4] ? hdr[2] : 1; ohdr[3] = {P}_NUM_CLASSES;
    fwrite(ohdr, sizeof ohdr, 1, fo);
    for (n = 0; n < hdr[1]; ++n) {{
        if (fread(frames, sizeof frames[0] * {P}_INPUT_SIZE, (size_t)hdr[2], fi) != (size_t)hdr[2]) return fail("short input");
        if (hdr[4] == 0) {{
            if (n == 0) bench_begin();
            {prefix}_run(&state, frames, hdr[2], scores);
            if (n == 0) bench_end();
            fwrite(scores, sizeof scores, 1, fo);
        }} else {{
            {prefix}_init(&state);
            for (t = 0; t < hdr[2]; ++t) {{
                {prefix}_step(&state, frames + t * {P}_INPUT_SIZE, scores);
                fwrite(scores, sizeof scores, 1, fo);
            }}
        }}
    }}
    fclose(fi);
    k = fclose(fo);
    if (k != 0) return fail("cannot write output");
    printf("harness ok: %ld sequences, state_bytes %lu\\n", (long)hdr[1], (unsigned long)sizeof(state));
    return 0;
}}
"""


def write_input(path, x: np.ndarray, precision: str, stream: bool = False) -> None:
    """Frames ``[n, steps, input_size]`` -> the harness's input file."""
    x = np.ascontiguousarray(x, np.int8 if precision == "int8" else np.float32)
    n, steps, c = x.shape
    if steps > MAX_STEPS:
        raise ValueError(f"sequences of {steps} steps exceed the harness limit of {MAX_STEPS}")
    hdr = np.array([MAGIC_IN, n, steps, c, int(stream)], "<i4")
    with open(path, "wb") as f:
        f.write(hdr.tobytes() + x.tobytes())


def read_output(path, precision: str) -> np.ndarray:
    """The harness's output file -> scores ``[n, classes]`` or ``[n, steps, classes]``."""
    raw = open(path, "rb").read()
    hdr = np.frombuffer(raw[:16], "<i4")
    if len(hdr) != 4 or hdr[0] != MAGIC_OUT:
        raise ValueError(f"{path} is not a harness output (truncated run?)")
    n, rows, k = (int(v) for v in hdr[1:])
    y = np.frombuffer(raw[16:], "<i4" if precision == "int8" else "<f4")
    if y.size != n * rows * k:
        raise ValueError(f"{path}: expected {n * rows * k} scores, got {y.size} (the run stopped early)")
    y = y.reshape(n, rows, k)
    return y[:, 0] if rows == 1 else y
