"""Build a generated C model for a Cortex-M target and run it under qemu-system-arm.

Recipe (../shared/NOTES.md): arm-none-eabi-gcc + newlib nano + rdimon semihosting; a vector table
at 0 (``startup.c``, kept with ``-u vectors``); QEMU's ``-semihosting`` gives the guest host files
(frames in, scores out), argv and its exit code. A hung guest is killed by an external timeout.
Instructions are counted exactly by a TCG plugin (``icount_plugin.c``) between the harness's
``bench_begin``/``bench_end`` markers, around the first whole-sequence inference.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from devices.targets import CortexMTarget
from export.c import harness as HN
from runtime.errors import MissingDependency, UserError

HERE = Path(__file__).resolve().parent
STARTUP = HERE / "startup.c"
PLUGIN_SRC = HERE / "icount_plugin.c"
WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
LINK = ["--specs=nano.specs", "--specs=rdimon.specs", "-Wl,--gc-sections", "-Wl,--section-start=.vectors=0",
        "-Wl,-u,vectors"]


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        raise MissingDependency(name, f"sudo apt-get install {package}")
    return path


def _run(cmd: list, what: str, cwd=None, timeout: float = 180) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if p.returncode != 0:
        msg = (p.stderr or p.stdout).strip()
        first = next((ln for ln in msg.splitlines() if "error" in ln.lower()), msg[:300])
        if "specs" in first and ("No such file" in first or "cannot read" in first):
            raise MissingDependency("newlib for arm-none-eabi", "sudo apt-get install libnewlib-arm-none-eabi")
        raise UserError(f"{what} failed: {first}")
    return p


@dataclasses.dataclass
class Firmware:
    target: CortexMTarget
    elf: Path
    model_obj: Path
    stack_usage: Path
    prefix: str
    precision: str
    opt: str


def build(lib_dir, prefix: str, precision: str, target: CortexMTarget, work_dir, opt: str = "-O2") -> Firmware:
    """Compile the model (alone, for its size and stack usage) and link it with the harness."""
    cc = tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    lib_dir = Path(lib_dir).resolve()
    flags = target.cflags + WARN + [opt, "-ffunction-sections", "-fdata-sections"]
    obj = work / f"{prefix}.o"
    _run([cc, *flags, "-fstack-usage", "-fcallgraph-info=su", "-c", lib_dir / f"{prefix}.c", "-o", obj],
         f"{target.name} build of {prefix}.c")
    harness_c = work / "harness.c"
    harness_c.write_text(HN.harness_source(prefix, precision))
    elf = work / f"{prefix}.elf"
    _run([cc, *flags, "-I", lib_dir, harness_c, STARTUP, obj, *LINK, "-o", elf, "-lm"], f"{target.name} link of the firmware")
    return Firmware(target, elf, obj, work / f"{prefix}.su", prefix, precision, opt)


def run_selftest(lib_dir, prefix: str, precision: str, target: CortexMTarget, work_dir, timeout: float = 60) -> int | None:
    """Build ``<prefix>_selftest.h`` into a firmware whose ``main`` returns ``<prefix>_selftest()``, run it
    under QEMU; the number of scores that differ from the exported ones (None: the package has no
    self-test, exported before it existed). What a user does on the real board, here on the emulated one."""
    lib_dir = Path(lib_dir).resolve()
    if not (lib_dir / f"{prefix}_selftest.h").is_file():
        return None
    cc, qemu = tool("arm-none-eabi-gcc", "gcc-arm-none-eabi"), tool("qemu-system-arm", "qemu-system-arm")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    main_c = work / "selftest_main.c"
    main_c.write_text(f'#include <stdio.h>\n#include "{prefix}_selftest.h"\n'
                      f'int main(void) {{ int wrong = {prefix}_selftest(); printf("selftest %d\\n", wrong); return wrong != 0; }}\n')
    elf = work / f"{prefix}_selftest.elf"
    _run([cc, *target.cflags, *WARN, "-O2", "-ffunction-sections", "-fdata-sections", "-I", lib_dir, main_c, STARTUP,
          lib_dir / f"{prefix}.c", *LINK, "-o", elf, "-lm"], f"{target.name} build of the self-test")
    cmd = [qemu, "-M", target.qemu_machine, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=work, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"the {target.name} self-test did not finish within {timeout:g} s under QEMU") from None
    m = re.search(r"selftest (\d+)", p.stdout)
    if m is None or p.returncode not in (0, 1):
        why = " (a CPU fault)" if p.returncode == 70 else ""
        raise UserError(f"the {target.name} self-test exited with code {p.returncode}{why}: {(p.stdout + p.stderr).strip()[-300:]}")
    return int(m.group(1))


def symbol(elf: Path, name: str, nm: tuple[str, str] = ("arm-none-eabi-nm", "binutils-arm-none-eabi")) -> int:
    """Address of function ``name`` in ``elf`` (the Thumb bit cleared), read with ``nm`` = (tool, apt package)."""
    out = _run([tool(*nm), elf], nm[0]).stdout
    m = re.search(rf"^([0-9a-fA-F]+) [TtWw] {re.escape(name)}$", out, re.M)
    if not m:
        raise UserError(f"{elf} has no symbol {name}: rebuild it with the harness of export/c/harness.py")
    return int(m.group(1), 16) & ~1


def plugin_path(cache_dir) -> Path:
    """The instruction-counting plugin, built with the host gcc once per cache folder."""
    so = Path(cache_dir) / "libicount.so"
    if not so.is_file() or so.stat().st_mtime < PLUGIN_SRC.stat().st_mtime:
        cc = tool("gcc", "gcc")
        so.parent.mkdir(parents=True, exist_ok=True)
        tmp = so.with_suffix(".tmp.so")
        _run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", PLUGIN_SRC, "-o", tmp],
             "build of the QEMU instruction-count plugin")
        tmp.replace(so)
    return so


@dataclasses.dataclass
class QemuRun:
    scores: np.ndarray
    instructions: list[int]  # per measured region (the first inference)
    stdout: str
    state_bytes: int | None


def run(fw: Firmware, x: np.ndarray, stream: bool = False, timeout: float = 60, count: bool = True,
        work_dir=None) -> QemuRun:
    """Run the firmware on frames ``x [n, steps, C]`` under QEMU; scores (+ instruction counts)."""
    qemu = tool("qemu-system-arm", "qemu-system-arm")
    work = Path(work_dir or fw.elf.parent)
    inp, out, counts = work / "input.bin", work / "output.bin", work / "icount.txt"
    for f in (out, counts):
        f.unlink(missing_ok=True)
    HN.write_input(inp, x, fw.precision, stream)
    cmd = [qemu, "-M", fw.target.qemu_machine, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", f"enable=on,target=native,arg={fw.elf.name},arg={inp.name},arg={out.name}",
           "-kernel", str(fw.elf.resolve())]
    if count:
        begin, end = symbol(fw.elf, "bench_begin"), symbol(fw.elf, "bench_end")
        cmd += ["-plugin", f"{plugin_path(work)},begin={begin:#x},end={end:#x},out={counts.name}"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=work, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"the {fw.target.name} guest ({fw.elf.name}) did not finish within {timeout:g} s under QEMU "
                        f"and was stopped: it hangs (infinite loop or lock-up); check the firmware") from None
    if p.returncode != 0:
        tail = (p.stdout + p.stderr).strip()[-300:]
        why = " (a CPU fault: the fault handler exits with 70)" if p.returncode == 70 else ""
        raise UserError(f"the {fw.target.name} guest exited with code {p.returncode}{why}: {tail}")
    m = re.search(r"state_bytes (\d+)", p.stdout)
    instr = [int(v) for v in counts.read_text().split()] if count and counts.is_file() else []
    return QemuRun(HN.read_output(out, fw.precision), instr, p.stdout, int(m.group(1)) if m else None)


# -- static figures ----------------------------------------------------------------------------
def object_sizes(obj: Path) -> dict:
    """Flash of the model object by kind: weights/tables (.rodata), code (.text), data (.data/.bss)."""
    size = tool("arm-none-eabi-size", "binutils-arm-none-eabi")
    out = _run([size, "-A", obj], "arm-none-eabi-size").stdout
    sums = {"code": 0, "rodata": 0, "data": 0, "bss": 0}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        name, n = parts[0], int(parts[1])
        if name.startswith(".text"):
            sums["code"] += n
        elif name.startswith(".rodata"):
            sums["rodata"] += n
        elif name.startswith(".data"):
            sums["data"] += n
        elif name.startswith(".bss"):
            sums["bss"] += n
    sums["flash"] = sums["code"] + sums["rodata"] + sums["data"]
    return sums


def stack_bound(su_file: Path, prefix: str) -> dict:
    """Deepest stack of the model's API, from gcc's own call graph (``-fcallgraph-info=su``).

    Every path from an API function (``<prefix>_run``, ``_step``, ...) through the static functions it
    calls is summed frame by frame (the generated C has no recursion and no function pointers);
    the deepest is the bound. Functions the compiler inlined have no node (their frames are part
    of their caller's). Calls out of the model (``memset``, libm's ``expf`` ...) have no frame size
    in the graph: they are listed under ``external`` and not counted. ``su_file`` is the
    ``-fstack-usage`` file (checked for VLAs / alloca); the ``.ci`` graph lies beside it.
    """
    frames: dict[str, int] = {}
    for line in su_file.read_text().splitlines():
        loc, n, kind = line.split("\t")
        name = loc.rsplit(":", 1)[-1]
        if "dynamic" in kind and "bounded" not in kind:
            raise UserError(f"{name} has an unbounded stack frame ({kind}): the generated C must not use VLAs or alloca")
        frames[name] = int(n)
    size, calls = _call_graph(su_file.with_suffix(".ci"))
    deepest: dict[str, tuple[int, list[str]]] = {}

    def walk(node: str, seen: tuple = ()) -> tuple[int, list[str]]:
        if node in seen:
            raise UserError(f"the generated C recurses through {node}: its stack has no static bound")
        if node not in deepest:
            below = [walk(c, seen + (node,)) for c in calls.get(node, ()) if c in size]
            depth, chain = max(below, default=(0, []))
            deepest[node] = (size[node] + depth, [_short(node)] + chain)
        return deepest[node]

    api = [n for n in size if _short(n).startswith(f"{prefix}_")]
    total, chain = max((walk(n) for n in api), default=(0, []))
    external = sorted({_short(c) for n in size for c in calls.get(n, ()) if c not in size})
    return {"stack": total, "chain": chain, "external": external, "frames": frames}


def _short(node: str) -> str:
    return node.rsplit(":", 1)[-1]


def _call_graph(ci_file: Path) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Nodes with their static frame size, and the edges, from a gcc ``-fcallgraph-info=su`` file."""
    size: dict[str, int] = {}
    calls: dict[str, list[str]] = {}
    for line in ci_file.read_text().splitlines():
        if m := re.match(r'node: \{ title: "([^"]+)" label: "[^"]*\\n(\d+) bytes \((static|dynamic[^)]*)\)"', line):
            size[m.group(1)] = int(m.group(2))
        elif m := re.match(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', line):
            calls.setdefault(m.group(1), []).append(m.group(2))
    if not size:
        raise UserError(f"{ci_file} holds no call graph: the compiler must support -fcallgraph-info (gcc >= 10)")
    return size, calls
