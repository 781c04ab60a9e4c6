"""Deploy a bundle to a Raspberry Pi over SSH, switch to it atomically, run check and bench there.

Layout on the Pi (``--dir``, default ``~/rnn-edge``)::

    .rnn-edge-deploy       marks the folder as deploy's: nothing is deleted in a folder without it
    incoming/<tmp>/        uploads in progress (removed when done; stale ones by the next deploy)
    releases/<id>/         one extracted, verified bundle each; ``venv`` -> ../../venvs/<hash>
    venvs/<hash>/          a Python venv per requirements.txt content, shared by releases
    current -> releases/<id>   the active version, replaced by one rename()

Steps: bundle (every file of folder and tarball against SHA256SUMS, here: bundle_verify.py) -> connect
(strict host keys: ssh.py) -> prepare (aarch64, python3, --dir a folder of deploy's: checked before anything changes)
-> upload (to incoming/) -> verify (tarball sha256 on the Pi) -> unpack (+ ``sha256sum --check`` of
every file) -> install (venv) -> check (the new release, before it is active) -> activate (symlink
swap) -> bench -> fetch results -> prune.

Until ``activate`` nothing the Pi runs has changed; ``activate`` is a single rename, so an
interruption anywhere leaves either the old version or the new, checked one active. A bench
failure after the switch switches back.

Requirements: the venv is made with ``--system-site-packages``; when the pinned versions are
already importable (a provisioned or offline Pi, the emulated Pi) nothing is installed, else pip
installs them from the bundle's ``wheels/`` (``invoke bundle --wheels``, no network needed) or
from PyPI (Raspberry Pi OS also lists piwheels).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from devices.rpi.bundle import SUMS, Bundle, load_bundle
from devices.rpi.bundle_verify import verify_bundle
from devices.rpi.ssh import check_key, connect, parse_host
from runtime import atomic
from runtime.errors import UserError

STEPS = ("bundle", "connect", "prepare", "upload", "verify", "unpack", "install", "check", "activate", "bench", "fetch",
         "prune")
KEEP_RELEASES = 3

#: Run on the Pi by the venv's Python: exit 1 and name what differs unless every pin is installed.
REQUIREMENTS_MET = """
import sys, importlib.metadata as md
bad = []
for line in open(sys.argv[1]):
    line = line.split('#')[0].strip()
    if not line:
        continue
    name, _, want = line.partition('==')
    try:
        have = md.version(name.strip())
    except md.PackageNotFoundError:
        have = None
    if have != want.strip():
        bad.append(f"{name.strip()} {have or 'missing'} (want {want.strip()})")
print('; '.join(bad))
sys.exit(1 if bad else 0)
"""


# --- arguments, checked before anything is read, sent or changed -----------------------------

#: Written into ``--dir`` by the first deploy there. deploy empties ``incoming/`` and prunes
#: ``releases/`` and ``venvs/`` only inside a folder that holds it, so a --dir that names a folder
#: of the user's (the home folder, a project) is refused instead of emptied.
MARKER = ".rnn-edge-deploy"
#: The names a deploy folder of earlier versions (which wrote no marker) holds; such a folder,
#: recognised by its ``current -> releases/...`` link, is adopted (the marker is added).
LAYOUT = ("releases", "venvs", "incoming", "current", "current.new", ".deploy-lock")
DIR_FORMS = ("pass a folder of its own for deploy: relative to the home folder on the Pi (default rnn-edge, "
             "also written ~/rnn-edge) or absolute (e.g. /opt/rnn-edge)")


def remote_folder(remote_dir) -> str:
    """``--dir`` as the path the Pi's shell gets, normalised (``a//b/`` -> ``a/b``, ``~/x`` -> ``x``).

    Refused: an empty path, ``/``, ``.``, ``~`` (each the home folder or the root: deploy deletes
    inside --dir), ``..`` parts (they may climb out of the folder named), ``~user`` (the quoted path
    is not expanded), a leading ``-`` (mkdir and rm would read it as an option) and control
    characters (they break the line-based replies of the Pi).
    """
    text = str(remote_dir)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise UserError(f"--dir {text!r} contains control characters: {DIR_FORMS}")
    path = text[2:] if text.startswith("~/") else text
    if path.startswith("~"):
        raise UserError(f"--dir {text!r}: '~' alone is the home folder itself and '~user' is not expanded: "
                        f"{DIR_FORMS}")
    if ".." in path.split("/"):
        raise UserError(f"--dir {text!r} has a '..' part: {DIR_FORMS}")
    norm = posixpath.normpath(path) if path else "."
    if norm == "." or not norm.strip("/"):
        raise UserError(f"--dir {text!r} is the home folder or / on the Pi, and deploy empties and prunes "
                        f"folders inside --dir: {DIR_FORMS}")
    if norm.startswith("-"):
        raise UserError(f"--dir {text!r} starts with '-', which the Pi's commands would read as an option: "
                        f"{DIR_FORMS}")
    return norm


class DeployInterrupted(UserError):
    """Ctrl-C after the new release was switched to: it is active (and checked); the rest was not done."""
    exit_code = 130


# --- the deploy ---------------------------------------------------------------------------------

@dataclasses.dataclass
class DeployResult:
    release: str  # the release id now active
    remote_dir: str
    previous: str | None  # the release that was active before, if any
    results_dir: Path  # local folder with the fetched check/bench results
    results: dict  # {artifact folder: {"check": [verdict per artifact], "bench": {artifact: timings}}}


class _Remote:
    """Runs shell command lines on the Pi through one Fabric connection."""

    def __init__(self, conn):
        self.conn = conn

    def run(self, cmd: str, what: str, timeout: float | None = None) -> str:
        r = self.conn.run(cmd, hide=True, warn=True, in_stream=False, timeout=timeout)
        if r.exited != 0:
            lines = (r.stderr.strip() or r.stdout.strip()).splitlines()
            raise UserError(f"{what} failed on the Pi (exit {r.exited}): {lines[-1] if lines else 'no output'}")
        return r.stdout

    def script(self, cmd: str, messages: dict[int, str], timeout: float | None = None) -> str:
        """Run ``cmd``; a non-zero exit listed in ``messages`` raises that message (plus the Pi's last line)."""
        r = self.conn.run(cmd, hide=True, warn=True, in_stream=False, timeout=timeout)
        if r.exited != 0:
            lines = (r.stderr.strip() or r.stdout.strip()).splitlines()
            what = messages.get(r.exited, f"a command failed on the Pi (exit {r.exited})")
            raise UserError(f"{what} ({lines[-1]})" if lines else what)
        return r.stdout

    def ok(self, cmd: str) -> bool:
        return self.conn.run(cmd, hide=True, warn=True, in_stream=False).exited == 0

    def upload(self, local: Path, remote: str, progress: bool) -> None:
        """Stream a file into ``cat > remote`` over an exec channel (works on any POSIX sshd, no SFTP)."""
        from tqdm import tqdm
        chan = self.conn.client.get_transport().open_session()
        try:
            chan.exec_command(f"cat > {shlex.quote(remote)}")
            size = local.stat().st_size
            with open(local, "rb") as f, tqdm(total=size, unit="B", unit_scale=True, desc="upload",
                                              disable=not progress) as bar:
                for block in iter(lambda: f.read(1 << 16), b""):
                    chan.sendall(block)
                    bar.update(len(block))
            chan.shutdown_write()
            status = chan.recv_exit_status()
            err = chan.makefile_stderr("rb").read().decode(errors="replace").strip()
        finally:
            chan.close()
        if status != 0:
            raise UserError(f"upload to {remote} failed on the Pi (exit {status}): {err or 'no output'}; "
                            f"check free space (df -h) and permissions")


def _json_lines(text: str, what: str) -> list[dict]:
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]
    except json.JSONDecodeError:
        raise UserError(f"{what} printed something that is not JSON: {text[:80]!r}") from None


def run_check(remote: _Remote, rel: str, folder: str, timeout: float) -> list[dict]:
    """``python -m runtime check`` of one artifact folder of a release on the Pi; one dict per artifact."""
    q = shlex.quote
    out = f"results/check-{folder}.jsonl"
    r = remote.conn.run(f"cd {q(rel)} && mkdir -p results && venv/bin/python -m runtime check {q('artifacts/' + folder)} --json "
                        f"> {q(out)}; rc=$?; cat {q(out)}; exit $rc", hide=True, warn=True, in_stream=False,
                        timeout=timeout)
    verdicts = _json_lines(r.stdout, f"runtime check of {folder}")
    if r.exited != 0:
        bad = [f"{v.get('artifact')}: {v.get('why')}" for v in verdicts if v.get("verdict") == "FAIL"]
        err = r.stderr.strip().splitlines()
        why = "; ".join(bad) or (err[-1] if err else f"exit {r.exited}")
        raise UserError(f"runtime check of {folder} failed on the Pi: {why}; the new release was NOT activated")
    return verdicts


def run_bench(remote: _Remote, rel: str, folder: str, artifact: str, repeats: int, timeout: float) -> dict:
    """``python -m runtime bench`` of one artifact on the Pi (its step companion is timed too)."""
    q = shlex.quote
    out = f"results/bench-{folder}-{artifact}.json"
    text = remote.run(f"cd {q(rel)} && venv/bin/python -m runtime bench {q('artifacts/' + folder)} --artifact "
                      f"{q(artifact)} --repeats {int(repeats)} --warmup {max(1, min(5, int(repeats) // 10))} --json | tee {q(out)}"
                      f" && test -s {q(out)}", f"runtime bench of {folder}/{artifact}", timeout=timeout)
    found = _json_lines(text, f"runtime bench of {folder}/{artifact}")
    if not found:
        raise UserError(f"runtime bench of {folder}/{artifact} printed no result on the Pi")
    return found[-1]


def bench_targets(info: dict) -> list[tuple[str, str]]:
    """(folder, artifact) pairs to time: whole-sequence entries (their step companions come along)."""
    pairs = []
    for folder, entries in sorted(info.get("artifacts", {}).items()):
        seq = [e["name"] for e in entries if e.get("kind", "sequence") == "sequence"]
        pairs += [(folder, name) for name in (seq or [e["name"] for e in entries])]
    return pairs


def deploy(bundle, host: str, port: int | None = None, known_hosts=None, key_filename=None,
           remote_dir: str = "rnn-edge", results_dir=None, progress: bool = True,
           on_step: Callable[[str], None] | None = None, timeout: float = 900,
           bench_repeats: int = 50) -> DeployResult:
    """Deploy ``bundle`` (a Bundle, its folder or its tarball) to ``host``; see the module docstring.

    ``on_step(name)`` is called before each step (names in ``STEPS``): progress display, and tests
    that interrupt or tamper at a chosen point. Raises UserError with one line when a step fails;
    the previous release then stays active.
    """
    if bench_repeats < 1:
        raise UserError(f"--bench-repeats {bench_repeats}: the Pi times each artifact at least once; pass 1 or more")
    # every argument first, then the bundle, then the network: a mistake costs nothing on the Pi
    base = remote_folder(remote_dir)
    _, hostname, _ = parse_host(host, port)
    check_key(key_filename)
    # the results are written after the switch: a folder that cannot take them is found now, not then
    atomic.check_writable(Path(results_dir or Path("dist/rpi/results") / hostname) / "results.json", "--results")
    step = on_step or (lambda name: None)
    step("bundle")
    b, req = verify_bundle(bundle if isinstance(bundle, Bundle) else load_bundle(bundle))
    q = shlex.quote
    qb = q(base)

    step("connect")
    conn = connect(host, port=port, known_hosts=known_hosts, key_filename=key_filename)
    remote = _Remote(conn)
    tmp = release = None
    activated = locked = False
    lock = f"{qb}/.deploy-lock"
    try:
        step("prepare")
        # First round trip: the checks that change nothing (machine, python3, that --dir is a
        # folder of ours or new), then --dir is made ours (marker) and locked (mkdir is atomic).
        remote.script(
            f"m=$(uname -m); [ \"$m\" = aarch64 ] || {{ echo \"uname -m says $m\" >&2; exit 7; }}; "
            f"command -v python3 >/dev/null || exit 3; {_claim_folder(base)}; mkdir {lock} 2>/dev/null || exit 6",
            {7: "the Pi is not aarch64: the wheels need Raspberry Pi OS 64-bit (bookworm), reinstall it with "
                "Raspberry Pi Imager; nothing was changed on the Pi",
             3: "python3 is missing on the Pi: install Raspberry Pi OS 64-bit (bookworm), which has it; nothing was "
                "changed on the Pi",
             4: f"cannot create {base} on the Pi: check the path, permissions and free space (df -h)",
             8: f"--dir {base} is the home folder (or /) on the Pi, and deploy empties and prunes folders inside "
                f"--dir: {DIR_FORMS}; nothing was changed",
             9: f"{base} on the Pi exists and is not a folder: choose another --dir; nothing was changed",
             10: f"{base} on the Pi holds files and was not made by deploy (it has no {MARKER}), and deploy empties "
                 f"and prunes folders inside --dir: choose another --dir, or move those files away; nothing was "
                 f"changed",
             6: f"another deploy to {base} is running on the Pi (or one was killed): wait for it, or "
                f"remove {base}/.deploy-lock on the Pi; nothing was changed"})
        locked = True
        # then the folders, an empty incoming/ (stale uploads of killed deploys), the upload
        # folder and the active release; rm runs only in a folder that holds our marker
        out = remote.script(
            f"[ -f {qb}/{MARKER} ] || exit 10; "
            f"mkdir -p {qb}/releases {qb}/venvs {qb}/incoming && rm -rf {qb}/incoming/* || exit 4; "
            f"mktemp -d {qb}/incoming/XXXXXXXX || exit 4; readlink {qb}/current || true",
            {4: f"cannot create {base} on the Pi: check the path, permissions and free space (df -h)",
             10: f"{base}/{MARKER} vanished on the Pi: nothing was deleted; deploy again"}).split("\n")
        machine, tmp = "aarch64", out[0].strip()
        previous = out[1].strip().rsplit("/", 1)[-1] if len(out) > 1 and out[1].strip() else None

        step("upload")
        remote.upload(b.tarball, f"{tmp}/bundle.tar.gz", progress)

        step("verify")
        got = remote.run(f"sha256sum {q(tmp + '/bundle.tar.gz')}", "sha256 of the upload").split()
        if not got or got[0] != b.sha256:
            raise UserError(f"upload corrupted: sha256 on the Pi is {got[0][:16] if got else '?'}..., the bundle's is "
                            f"{b.sha256[:16]}...; nothing was activated, the previous version stays: deploy again")

        step("unpack")  # extract, check every file against SHA256SUMS, stage as releases/<id>
        release = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{b.sha256[:12]}-{tmp.rsplit('/', 1)[-1]}"
        rel = f"{base}/releases/{release}"
        unpacked = f"{tmp}/x/{b.name}"
        remote.script(
            f"mkdir {q(tmp + '/x')} && tar -xzf {q(tmp + '/bundle.tar.gz')} -C {q(tmp + '/x')} --no-same-owner "
            f"--no-same-permissions || exit 3; (cd {q(unpacked)} && sha256sum --check --strict --quiet {SUMS}) "
            f"|| exit 4; mv -T {q(unpacked)} {q(rel)} && rm -rf {q(tmp)} || exit 5",
            {3: "unpacking the bundle failed on the Pi (full disk?); nothing was activated",
             4: "sha256 check of the unpacked files failed on the Pi: the bundle is corrupt; nothing was activated",
             5: f"staging release {release} failed on the Pi; nothing was activated"})
        tmp = None

        step("install")
        venv = f"{base}/venvs/{hashlib.sha256(req).hexdigest()[:16]}"
        _ensure_venv(remote, venv, rel, timeout)

        step("check")
        folders = sorted(b.info.get("artifacts", {}))
        results = {folder: {"check": run_check(remote, rel, folder, timeout), "bench": {}} for folder in folders}

        step("activate")
        remote.run(f"ln -sfn releases/{q(release)} {qb}/current.new && mv -T {qb}/current.new {qb}/current",
                   "switching to the new release")
        activated = True

        step("bench")
        try:
            for folder, artifact in bench_targets(b.info):
                results[folder]["bench"][artifact] = run_bench(remote, f"{base}/current", folder, artifact,
                                                               bench_repeats, timeout)
        except BaseException:
            _switch_back(remote, base, previous)
            activated = False
            raise

        step("fetch")  # the results came back on stdout above; the Pi keeps its copy in results/
        local = Path(results_dir or Path("dist/rpi/results") / conn.host) / release
        atomic.write_json(local / "results.json", {
            "host": host, "release": release, "previous": previous, "bundle_sha256": b.sha256,
            "machine": machine, "bundle": b.info, "results": results})

        step("prune")
        _prune(remote, base, release, previous)
        return DeployResult(release, base, previous, local, results)
    except BaseException:
        # Best effort: the connection may be gone. What is not activated is removed now, or by the
        # next deploy (stale incoming/) and prune (old releases).
        # Never removes the release `current` points to (an interruption right after the switch).
        if activated and sys.exc_info()[0] is KeyboardInterrupt:  # the switch is done: say so, not "kept"
            raise DeployInterrupted(f"interrupted after the switch: release {release} is active on the Pi "
                                    f"(its check passed); the bench results were not saved and old releases "
                                    f"not pruned: deploy again to redo them") from None
        if activated and isinstance(sys.exc_info()[1], Exception):  # after the switch, "failed" alone would mislead
            e = sys.exc_info()[1]
            raise UserError(f"{e if isinstance(e, UserError) else f'{type(e).__name__}: {e}'}; release {release} "
                            f"is active on the Pi all the same (its check and bench passed): deploy again to finish "
                            f"the results and pruning") from None
        if not activated:
            cmds = [f"rm -rf {q(tmp)}"] if tmp else []
            if release:
                cmds.append(f"[ \"$(readlink {qb}/current)\" = {q('releases/' + release)} ] || "
                            f"rm -rf {q(base + '/releases/' + release)}")
            if cmds:
                try:
                    remote.ok("; ".join(cmds))
                except Exception:  # noqa: BLE001 - the original error matters, not this one
                    pass
        raise
    finally:
        if locked:
            try:
                remote.ok(f"rmdir {lock}")
            except Exception:  # noqa: BLE001 - the connection may be gone; the next deploy then names the lock
                pass
        conn.close()


def _claim_folder(base: str) -> str:
    """Shell that makes ``base`` a deploy folder of ours (it holds MARKER), else exits 8 (it is the home
    folder or /), 9 (not a folder) or 10 (it holds files deploy did not make; nothing is changed).

    A missing folder is created; an empty one, or one laid out by an earlier deploy that wrote no
    marker (``current -> releases/...`` and only the names of LAYOUT), gets the marker.
    """
    qb = shlex.quote(base)
    note = shlex.quote("made by rnn-edge's deploy (invoke deploy), which empties incoming/ and prunes releases/ "
                       "and venvs/ in this folder only because this file is here")
    return (f'if [ {qb} -ef "$HOME" ] || [ {qb} -ef / ]; then exit 8; '
            f'elif [ ! -e {qb} ] && [ ! -L {qb} ]; then mkdir -p {qb} || exit 4; '
            f'elif [ ! -d {qb} ]; then exit 9; '
            f'elif [ ! -f {qb}/{MARKER} ]; then '
            f'case "$(readlink {qb}/current)" in releases/*) ;; *) [ -z "$(ls -A {qb})" ] || exit 10;; esac; '
            f'for f in {qb}/* {qb}/.[!.]* {qb}/..?*; do [ -e "$f" ] || [ -L "$f" ] || continue; '
            f'case "${{f##*/}}" in {"|".join(LAYOUT)}) ;; *) exit 10;; esac; done; fi; '
            f"[ -f {qb}/{MARKER} ] || printf '%s\\n' {note} > {qb}/{MARKER} || exit 4")


def _ensure_venv(remote: _Remote, venv: str, rel: str, timeout: float) -> None:
    """Link ``rel``/venv to a venv at ``venv`` whose packages match ``rel``/requirements.txt.

    The venv is made once per requirements content and marked complete last, so an interrupted
    install is redone. It sees the system's site-packages: pins already installed there (an
    offline or provisioned Pi) need no download; missing ones are pip-installed into the venv,
    from the bundle's wheels/ if it has them, else from the package index.
    """
    q = shlex.quote
    marker, reqs, link = f"{venv}/.rnn-edge-complete", f"{rel}/requirements.txt", f"{rel}/venv"
    check = f"{q(venv)}/bin/python -c {q(REQUIREMENTS_MET)} {q(reqs)}"
    link_cmd = f"ln -s ../../venvs/{q(venv.rsplit('/', 1)[-1])} {q(link)}"
    r = remote.conn.run(
        f"if [ ! -f {q(marker)} ]; then rm -rf {q(venv)} && python3 -m venv --system-site-packages --without-pip "
        f"{q(venv)} || exit 3; {check} || exit 10; touch {q(marker)}; fi; {link_cmd}",
        hide=True, warn=True, in_stream=False, timeout=timeout)
    if r.exited == 0:
        return
    if r.exited != 10:
        last = (r.stderr.strip() or r.stdout.strip() or "no output").splitlines()[-1]
        raise UserError(f"creating the venv on the Pi failed ({last}): on Raspberry Pi OS run sudo apt install "
                        f"python3-venv; nothing was activated")
    wheels = f"{rel}/wheels"
    source = f"--no-index --find-links {q(wheels)}" if remote.ok(f"test -d {q(wheels)}") else ""
    remote.run(f"{q(venv)}/bin/python -m ensurepip --default-pip", "installing pip into the venv", timeout=timeout)
    remote.run(f"{q(venv)}/bin/python -m pip install --disable-pip-version-check --quiet {source} -r {q(reqs)}",
               "pip install of the requirements (no network? build the bundle with --wheels)", timeout=timeout)
    remote.run(check, "checking the installed versions")
    remote.run(f"touch {q(marker)} && {link_cmd}", "linking the venv")


def _switch_back(remote: _Remote, base: str, previous: str | None) -> None:
    qb = shlex.quote(base)
    if previous:
        remote.ok(f"ln -sfn releases/{shlex.quote(previous)} {qb}/current.new && mv -T {qb}/current.new {qb}/current")
    else:
        remote.ok(f"rm -f {qb}/current")


def _prune(remote: _Remote, base: str, release: str, previous: str | None) -> None:
    """Keep the newest releases (the active and the previous one always); drop venvs none uses.
    Only in a folder that holds our marker (checked again here: this is where most is deleted)."""
    keep = " ".join(shlex.quote(r) for r in {release, previous} if r)
    remote.run(
        f"cd {shlex.quote(base)} && [ -f {MARKER} ] && "
        f"for r in $(ls -1 releases | sort | head -n -{KEEP_RELEASES}); do "
        f"case \" {keep} \" in *\" $r \"*) ;; *) rm -rf \"releases/$r\";; esac; done && "
        f"for v in $(ls -1 venvs); do used=; for l in releases/*/venv; do "
        f"[ \"$(readlink \"$l\")\" = \"../../venvs/$v\" ] && used=1; done; [ -n \"$used\" ] || rm -rf \"venvs/$v\"; done",
        "pruning old releases")
