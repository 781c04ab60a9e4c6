"""An emulated Raspberry Pi 4: an arm64 Debian bookworm root run by qemu-user on an x86 host.

Raspberry Pi OS 64-bit is Debian bookworm for arm64, so a bookworm arm64 root with the same
Python (3.11) and the same aarch64 wheels runs the same code the Pi runs, instruction for
instruction as a Cortex-A72 (``QEMU_CPU=cortex-a72``; qemu's default ``max`` CPU has features no
Pi has).

How it is made (``build_root``), once per recipe, cached under ``~/.cache/rnn-edge``:

1. ``mmdebstrap --variant=extract`` unpacks python3, python3-venv, coreutils, dash, tar, gzip and
   their dependencies for arm64 from the Debian mirror that apt uses on this machine (read from
   the apt sources at run time). The extract variant runs no maintainer script, so no emulation
   is needed to build it (~5 s, ~110 MB).
2. The pinned aarch64 wheels (numpy, onnxruntime, ai-edge-litert) are installed from the host
   with pip's platform options into ``ROOT/opt/site``, which a ``.pth`` file puts on the system
   Python's path: the Pi comes provisioned, as the CI Pi has no network.
3. The stdlib is byte-compiled on the host (same 3.11 bytecode), which saves seconds per start.
4. A fake Raspberry Pi 4 ``/proc/cpuinfo`` and ``/sys/devices/system/cpu`` tree are written
   beside the root: ONNX Runtime's CPU detection otherwise reads the x86 host's and crashes.

How commands run in it (``EmulatedPi.argv``): ``unshare --user --map-root-user --mount`` then
``enter_pi.sh``, which registers qemu-aarch64-static in a binfmt_misc instance private to that
namespace (Linux >= 6.7), bind-mounts /proc, /sys, /dev with the fake CPU files over them, and
chroots into the root. Every process, children included (pip, venv, ``sh -c``), is aarch64 code
under qemu; nothing changes on the host. The root is built atomically (a temporary folder renamed
into place under a lock), so an interrupted build never leaves a half root behind.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from devices.rpi.pins import PI_PYTHON, PI_SUITE, pip_platform_args, pyproject_pins
from runtime.cache import private_dir
from runtime.errors import MissingDependency, UserError

RECIPE_VERSION = 1
#: Debian packages unpacked into the root (their dependencies come along).
ROOT_PACKAGES = ["python3", "python3-venv", "libstdc++6", "dash", "coreutils", "tar", "gzip"]
#: Wheels provisioned into the root's system site (pinned from pyproject.toml).
ROOT_WHEELS = ["numpy", "onnxruntime", "ai-edge-litert"]
QEMU_CPU = "cortex-a72"
PI_MODEL = "Raspberry Pi 4 Model B Rev 1.1"
PI_CORES = 4
ENTER_SCRIPT = Path(__file__).with_name("enter_pi.sh")
MIRROR_ENV = "RNN_EDGE_DEBIAN_MIRROR"


def cache_dir() -> Path:
    """Where built roots live: ``runtime.cache.cache_root()`` ($RNN_EDGE_CACHE, else
    $XDG_CACHE_HOME/rnn-edge, else ~/.cache/rnn-edge), created private (``private_dir``): one line, not a
    traceback, when it cannot be made, and refused when other users could write the code run from it."""
    return private_dir()


def recipe() -> dict:
    """Everything that decides the root's content; its hash names the cached root."""
    pins = pyproject_pins()
    return {
        "version": RECIPE_VERSION,
        "suite": PI_SUITE, "arch": "arm64", "variant": "extract",
        "packages": ROOT_PACKAGES,
        "python": PI_PYTHON, "platform": pip_platform_args(),
        "wheels": [f"{name}=={pins[name]}" for name in ROOT_WHEELS],
        "cpu": QEMU_CPU, "model": PI_MODEL, "cores": PI_CORES,
        "enter_script": hashlib.sha256(ENTER_SCRIPT.read_bytes()).hexdigest(),
    }


def recipe_key(r: dict | None = None) -> str:
    return hashlib.sha256(json.dumps(r or recipe(), sort_keys=True).encode()).hexdigest()[:16]


# --- the Debian mirror, from apt's own configuration -------------------------------------------

def _apt_source_files() -> list[Path]:
    """The host's apt source files (sources.list and sources.list.d/*), located through apt-config."""
    etc, main, parts = "/etc/apt/", "sources.list", "sources.list.d"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["apt-config", "shell", "E", "Dir::Etc/", "M", "Dir::Etc::sourcelist/f",
                              "P", "Dir::Etc::sourceparts/d"], capture_output=True, text=True, timeout=10).stdout
        found = dict(re.findall(r"^(\w)='(.*)'$", out, re.M))
        etc, main, parts = found.get("E", etc), found.get("M", main), found.get("P", parts)
    main_path = Path(main) if os.path.isabs(main) else Path(etc) / main
    parts_path = Path(parts) if os.path.isabs(parts) else Path(etc) / parts
    files = [main_path] + sorted(Path(p) for p in glob.glob(str(parts_path / "*.list")))
    return files + sorted(Path(p) for p in glob.glob(str(parts_path / "*.sources")))


def _apt_entries(path: Path):
    """Yield (uris, suites, components) of each enabled binary ('deb') source in an apt file."""
    try:
        text = path.read_text()
    except OSError:
        return
    if path.suffix == ".sources":  # deb822 stanzas
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"])[0].lower() != "no":
                yield fields.get("uris", []), fields.get("suites", []), fields.get("components", [])
    else:  # one-line format: deb [options] uri suite component...
        for line in text.splitlines():
            line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb":
                yield [line[1]], [line[2]], line[3:]


def debian_mirror(suite: str = PI_SUITE) -> str:
    """The Debian mirror apt uses here for ``suite`` ($RNN_EDGE_DEBIAN_MIRROR overrides it)."""
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV]
    for path in _apt_source_files():
        for uris, suites, components in _apt_entries(path):
            if suite in suites and "main" in components and uris:
                return uris[0]
    raise UserError(f"no apt source for Debian {suite} main was found on this machine; "
                    f"set {MIRROR_ENV} to a Debian mirror URL")


# --- the fake Raspberry Pi 4 CPU description ----------------------------------------------------

def fake_cpuinfo(cores: int = PI_CORES, model: str = PI_MODEL) -> str:
    """/proc/cpuinfo as a Raspberry Pi 4 (BCM2711, 4x Cortex-A72 r0p3) shows it."""
    core = ("processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
            "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
            "CPU revision\t: 3\n\n")
    return ("".join(core.format(i=i) for i in range(cores))
            + f"Hardware\t: BCM2835\nRevision\t: c03111\nSerial\t\t: 10000000c0ffee00\nModel\t\t: {model}\n")


def write_fake_cpu_sysfs(folder: Path, cores: int = PI_CORES) -> None:
    """A /sys/devices/system/cpu tree for one cluster of ``cores`` Cortex-A72 at 0.6-1.8 GHz."""
    span = f"0-{cores - 1}\n"
    for name in ("possible", "present", "online"):
        (folder / name).write_text(span)
    (folder / "kernel_max").write_text(f"{cores - 1}\n")
    for i in range(cores):
        cpu = folder / f"cpu{i}"
        files = {
            "online": "1", "topology/physical_package_id": "0", "topology/cluster_id": "0",
            "topology/core_id": str(i), "topology/core_siblings_list": span.strip(),
            "topology/package_cpus_list": span.strip(), "topology/cluster_cpus_list": span.strip(),
            "topology/thread_siblings_list": str(i), "topology/core_cpus_list": str(i),
            "cpufreq/cpuinfo_max_freq": "1800000", "cpufreq/cpuinfo_min_freq": "600000",
            "cache/index0/level": "1", "cache/index0/type": "Data", "cache/index0/size": "32K",
            "cache/index1/level": "1", "cache/index1/type": "Instruction", "cache/index1/size": "48K",
            "cache/index2/level": "2", "cache/index2/type": "Unified", "cache/index2/size": "1024K",
            "cache/index2/shared_cpu_list": span.strip(),
        }
        for rel, value in files.items():
            (cpu / rel).parent.mkdir(parents=True, exist_ok=True)
            (cpu / rel).write_text(value + "\n")


# --- building -----------------------------------------------------------------------------------

def _require_tools() -> None:
    for tool, package in (("mmdebstrap", "mmdebstrap"), ("qemu-aarch64-static", "qemu-user-static"),
                          ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            raise MissingDependency(tool, f"apt-get install {package}")


def _run_logged(cmd: list[str], log: Path, what: str, env: dict | None = None) -> None:
    with open(log, "ab") as f:
        f.write(("\n$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise UserError(f"{what} failed (exit {proc.returncode}): {tail} (full log: {log})")


def build_root(dest: Path, mirror: str | None = None, progress: bool = True) -> None:
    """Build the root for the current recipe into the new folder ``dest`` (root/, fake/, recipe.json)."""
    from tqdm import tqdm
    _require_tools()
    r = recipe()
    mirror = mirror or debian_mirror()
    dest.mkdir(parents=True)
    log = dest / "build.log"
    root, fake = dest / "root", dest / "fake"
    steps = tqdm(total=4, desc="emulated Pi root", unit="step", disable=not progress)

    steps.set_postfix_str("mmdebstrap")
    mode = "root" if os.geteuid() == 0 else "unshare"
    _run_logged(["mmdebstrap", f"--mode={mode}", "--arch=arm64", "--variant=extract",
                 "--include=" + ",".join(r["packages"]), r["suite"], str(root), mirror],
                log, f"mmdebstrap (Debian {r['suite']} arm64 from {mirror})")
    steps.update()

    steps.set_postfix_str("aarch64 wheels")
    site = root / "opt" / "site"
    _run_logged([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "--no-warn-conflicts", "--no-warn-script-location", "--target", str(site), *r["platform"],
                 *r["wheels"]], log, "installing the aarch64 wheels (pip --platform)",
                env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})
    dist = root / "usr" / "lib" / "python3" / "dist-packages"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "rnn_edge_opt_site.pth").write_text("/opt/site\n")
    steps.update()

    steps.set_postfix_str("byte-compiling")
    # Same CPython minor version => same bytecode; some stdlib test files are not valid Python 3.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0",
                    str(root / "usr" / "lib" / f"python{PI_PYTHON}"), str(dist)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    steps.update()

    steps.set_postfix_str("Pi 4 CPU description")
    for d in ("proc", "sys", "dev", "tmp", "home/pi"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (fake / "cpu").mkdir(parents=True)
    (fake / "binfmt_misc").mkdir()
    (fake / "cpuinfo").write_text(fake_cpuinfo())
    write_fake_cpu_sysfs(fake / "cpu")
    (dest / "recipe.json").write_text(json.dumps({**r, "mirror": mirror}, indent=2) + "\n")
    steps.update()
    steps.close()


def ensure_root(mirror: str | None = None, progress: bool = True, cache: Path | None = None) -> Path:
    """The cached root folder for the current recipe, built first if missing (atomic, locked)."""
    cache = Path(cache or cache_dir())
    final = cache / f"rpi-root-{recipe_key()}"
    if (final / "recipe.json").is_file():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"rpi-root-{recipe_key()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same root
        if (final / "recipe.json").is_file():
            return final
        for stale in glob.glob(str(final) + ".partial-*"):  # left by an interrupted build
            shutil.rmtree(stale, ignore_errors=True)
        partial = Path(f"{final}.partial-{os.getpid()}")
        try:
            build_root(partial, mirror=mirror, progress=progress)
            os.replace(partial, final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return final


# --- running ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EmulatedPi:
    """One emulated Raspberry Pi: a built root plus this device's own persistent state.

    ``state`` holds the device's home (mounted at /home/pi) and /tmp, so several devices can share
    one cached root and each starts clean. ``state=None`` runs with the root's own (empty) home.
    """

    home: Path  # the built root folder (root/, fake/, recipe.json)
    state: Path | None = None

    @property
    def root(self) -> Path:
        return self.home / "root"

    @property
    def fake(self) -> Path:
        return self.home / "fake"

    def with_state(self, state: Path) -> EmulatedPi:
        """This Pi with its persistent files in ``state`` (created if missing)."""
        state = Path(state)
        (state / "home").mkdir(parents=True, exist_ok=True)
        (state / "tmp").mkdir(parents=True, exist_ok=True)
        (state / "tmp").chmod(0o1777)
        return dataclasses.replace(self, state=state.resolve())

    def host_path(self, pi_path: str) -> Path:
        """Where a path on the Pi lives on the host (files under /home/pi and /tmp are in ``state``)."""
        p = Path("/") / pi_path
        for inside, outside in (("/home/pi", "home"), ("/tmp", "tmp")):
            if self.state is not None and (p == Path(inside) or Path(inside) in p.parents):
                return self.state / outside / p.relative_to(inside)
        return self.root / p.relative_to("/")

    def argv(self, command: list[str]) -> list[str]:
        """The host command line that runs ``command`` (a program and its arguments) on the Pi."""
        return ["unshare", "--user", "--map-root-user", "--mount", "--", "/bin/sh", str(ENTER_SCRIPT),
                str(self.root), str(self.fake), str(self.state) if self.state else "-", *command]

    def shell_argv(self, script: str) -> list[str]:
        """The host command line that runs a shell command line on the Pi (its /bin/sh = dash)."""
        return self.argv(["/bin/sh", "-c", script])

    def run(self, command: list[str] | str, *, timeout: float = 300, check: bool = True,
            input: bytes | None = None) -> subprocess.CompletedProcess:
        """Run a program (list) or shell line (str) on the Pi; returns the completed process (bytes)."""
        argv = self.shell_argv(command) if isinstance(command, str) else self.argv(command)
        proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise UserError(f"command on the emulated Pi failed (exit {proc.returncode}): "
                            f"{command if isinstance(command, str) else ' '.join(command)}: "
                            f"{err[-1] if err else 'no output'}")
        return proc


def emulated_pi(state: Path | None = None, progress: bool = True) -> EmulatedPi:
    """An emulated Pi on the cached root (built first if needed), with ``state`` as its own files."""
    pi = EmulatedPi(ensure_root(progress=progress))
    return pi.with_state(state) if state is not None else pi


def main(argv: list[str] | None = None) -> int:
    """``python -m devices.rpi.emulated_root build | run [--state DIR] -- CMD...``"""
    ap = argparse.ArgumentParser(prog="python -m devices.rpi.emulated_root", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build (or find) the cached root and print its folder")
    run = sub.add_parser("run", help="run a command on the emulated Pi")
    run.add_argument("--state", help="folder for the device's /home/pi and /tmp (default: none)")
    run.add_argument("command", nargs="+")
    args = ap.parse_args(argv)
    try:
        pi = emulated_pi(Path(args.state) if getattr(args, "state", None) else None)
        if args.cmd == "build":
            print(pi.home)
            return 0
        return subprocess.run(pi.argv(args.command)).returncode
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
