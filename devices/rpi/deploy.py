"""Deploy a bundle to a Raspberry Pi over SSH, switch to it atomically, run check and bench there.

Layout on the Pi (``--dir``, default ``~/rnn-edge``)::

    .rnn-edge-deploy       marks the folder as deploy's: nothing is deleted in a folder without it
    incoming/<tmp>/        uploads in progress (removed when done; stale ones by the next deploy)
    releases/<id>/         one extracted, verified bundle each; ``venv`` -> ../../venvs/<hash>
    venvs/<hash>/          a Python venv per requirements.txt content, shared by releases
    current -> releases/<id>   the active version, replaced by one rename()

Steps: bundle (every file of folder and tarball against SHA256SUMS, here) -> connect (strict host
keys) -> prepare (aarch64, python3, --dir a folder of deploy's: checked before anything changes)
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

import base64
import dataclasses
import hashlib
import ipaddress
import json
import logging
import os
import posixpath
import shlex
import socket
import sys
import tarfile
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from devices.rpi.bundle import SUMS, Bundle, load_bundle, parse_sums
from runtime import atomic
from runtime.errors import MissingDependency, UserError
from runtime.manifest import sha256_of

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


HOST_FORMS = "e.g. pi@raspberrypi.local, pi@192.168.1.20:2222, pi@[fe80::1%eth0]:22 or pi@fe80::1%eth0"


def parse_host(host: str, port=None) -> tuple[str, str, int]:
    """(user, hostname, port) of ``[user@]host[:port]`` and ``--port``.

    IPv6: ``user@[addr]:port``, ``user@[addr]`` or a bare ``user@addr`` (a port cannot follow a bare
    address: its colons would swallow it). The port is 1 to 65535, 22 when none is given.
    """
    user, _, hostport = host.rpartition("@")
    if hostport.startswith("["):
        hostname, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")) or not _is_ipv6(hostname):
            raise UserError(f"--host {host!r}: write an IPv6 address in brackets, the port after them: "
                            f"pi@[fe80::1]:22 ({HOST_FORMS})")
        colon, port_text = rest[:1], rest[1:]
    elif hostport.count(":") > 1:
        if not _is_ipv6(hostport):
            raise UserError(f"--host {host!r} is not an IPv6 address; with a port write it in brackets, "
                            f"pi@[fe80::1]:22 ({HOST_FORMS})")
        hostname, colon, port_text = hostport, "", ""
    else:
        hostname, colon, port_text = hostport.partition(":")
    if not hostname:
        raise UserError(f"--host {host!r} names no host: pass user@hostname, {HOST_FORMS}")
    if colon and not (port_text.isascii() and port_text.isdigit()):
        raise UserError(f"--host {host!r}: the port after ':' must be a number, e.g. pi@raspberrypi.local:22")
    if port is not None:
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise UserError(f"--port {port!r} must be a number from 1 to 65535") from None
        if colon and int(port_text) != port:
            raise UserError(f"--host {host!r} names port {int(port_text)} but --port is {port}: give the port once")
    elif colon:
        port = int(port_text)
    port = 22 if port is None else port  # (not `port or 22`: --port 0 must be refused, not read as 22)
    if not 0 < port < 65536:
        raise UserError(f"SSH port {port} is out of range: choose 1 to 65535 (default 22)")
    return user, hostname, port


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)  # a zone (fe80::1%eth0) is allowed
        return True
    except ValueError:
        return False


def check_key(key_filename) -> Path | None:
    """``--key`` as a private key file paramiko can use, or one line that names what is wrong with it.

    Checked here because paramiko reports a missing file, a public key or a folder as a failed
    connection, and a passphrase-protected key (which deploy cannot ask for) as a refused login.
    """
    if key_filename is None:
        return None
    import paramiko
    path = Path(os.path.expanduser(str(key_filename)))
    example = "pass your private key file, e.g. --key ~/.ssh/id_ed25519"
    if not path.exists():
        raise UserError(f"--key {key_filename}: no such file: {example}")
    if path.is_dir():
        raise UserError(f"--key {key_filename} is a folder, not a key file: {example}")
    try:
        head = path.read_bytes()[:64]
    except OSError as e:
        raise UserError(f"--key {key_filename} cannot be read ({e.strerror or e}): check its permissions") from None
    if path.name.endswith(".pub") or head.startswith((b"ssh-", b"ecdsa-", b"sk-")):
        raise UserError(f"--key {key_filename} is a public key: pass the private key beside it "
                        f"({path.name.removesuffix('.pub')}); the .pub goes on the Pi (ssh-copy-id)")
    errors = []
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):  # what SSHClient tries
        try:
            kind.from_private_key_file(str(path))
            return path
        except paramiko.PasswordRequiredException:
            raise UserError(f"--key {key_filename} is protected by a passphrase, which deploy cannot ask for: "
                            f"load it into ssh-agent (ssh-add {key_filename}) and deploy without --key") from None
        except (paramiko.SSHException, ValueError, TypeError) as e:
            errors.append(str(e))
    raise UserError(f"--key {key_filename} is not a private key paramiko can read ({errors[0]}): pass an OpenSSH "
                    f"ed25519, ecdsa or rsa private key, e.g. ~/.ssh/id_ed25519")


# --- strict host keys ---------------------------------------------------------------------------

def fingerprint(key) -> str:
    """OpenSSH-style SHA256 fingerprint of a paramiko key."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _host_label(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class UnknownHostKey(UserError):
    pass


class ChangedHostKey(UserError):
    pass


class RevokedHostKey(UserError):
    pass


class DeployInterrupted(UserError):
    """Ctrl-C after the new release was switched to: it is active (and checked); the rest was not done."""
    exit_code = 130


def load_known_hosts(keys, known_hosts: Path) -> set[bytes]:
    """Add the keys of ``known_hosts`` to paramiko HostKeys ``keys``; returns the revoked keys (their blobs).

    paramiko reads neither marker of OpenSSH: it fails on the whole file at the first one. Here
    ``@cert-authority`` lines are skipped (they trust host certificates, which paramiko does not
    check, so skipping them only trusts less) and ``@revoked`` keys are never trusted, whichever
    line lists them. A line paramiko cannot decode still fails the whole file (fail closed).
    """
    from paramiko.hostkeys import HostKeyEntry
    revoked: set[bytes] = set()
    trusted = []
    for lineno, line in enumerate(known_hosts.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        marker, rest = (line.split(None, 1) + [""])[:2] if line.startswith("@") else ("", line)
        if marker == "@cert-authority":
            continue
        if marker not in ("", "@revoked"):
            raise UserError(f"{known_hosts} line {lineno}: unknown marker {marker!r} (OpenSSH knows @cert-authority "
                            f"and @revoked); fix or remove that line")
        entry = HostKeyEntry.from_line(rest, lineno)  # raises InvalidHostKey on a key that is not base64
        if marker == "@revoked":
            if entry is None:  # a revocation we cannot read must not be ignored silently
                raise UserError(f"{known_hosts} line {lineno}: @revoked line not understood; fix or remove it")
            revoked.add(entry.key.asbytes())
        elif entry is not None:  # (None: a key type paramiko does not know, as paramiko's own loader skips)
            trusted.append(entry)
    for entry in trusted:
        if entry.key.asbytes() in revoked:
            continue
        for name in entry.hostnames:
            if entry.key.get_name() not in (keys.lookup(name) or {}):  # the first line wins, as in paramiko
                keys.add(name, entry.key.get_name(), entry.key)
    return revoked


def strict_client(known_hosts: Path):
    """A paramiko SSHClient that knows only the keys in ``known_hosts`` and refuses any other.

    Its ``revoked`` attribute holds the keys ``known_hosts`` marks ``@revoked``.
    """
    import paramiko

    class Refuse(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            if key.asbytes() in client.revoked:
                raise RevokedHostKey(
                    f"host key of {hostname} ({key.get_name()} {fingerprint(key)}) is marked @revoked in "
                    f"{known_hosts}: refusing to connect. Ask whoever runs the Pi for its new host key")
            # paramiko names a host on another port than 22 "[host]:port"
            host, _, port = hostname[1:].partition("]:") if hostname.startswith("[") else (hostname, "", "22")
            raise UnknownHostKey(
                f"host key of {hostname} ({key.get_name()} {fingerprint(key)}) is not in {known_hosts}: refusing "
                f"to connect. Check that fingerprint on the Pi (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), "
                f"then add the key: ssh-keyscan -p {port} {host} >> {known_hosts}")

    client = paramiko.SSHClient()
    client.revoked = set()
    if known_hosts.is_file():
        try:
            client.revoked = load_known_hosts(client.get_host_keys(), known_hosts)
        except (OSError, paramiko.SSHException, paramiko.hostkeys.InvalidHostKey, ValueError) as e:
            raise UserError(f"cannot read known hosts file {known_hosts}: {e}; fix or replace it") from None
    client.set_missing_host_key_policy(Refuse())
    return client


def connect(host: str, port: int | None = None, known_hosts=None, key_filename=None, timeout: float = 20):
    """An open Fabric Connection to ``[user@]host[:port]`` with strict host-key checking."""
    try:
        import fabric
        import paramiko
    except ImportError:
        raise MissingDependency("fabric", "pip install 'rnn-edge[deploy]'") from None
    user, hostname, port = parse_host(host, port)
    key = check_key(key_filename)
    # paramiko logs a failed handshake (a port that is not SSH) from its transport thread, with
    # tracebacks; with no logging set up Python prints that to stderr. The error reaches us as an
    # exception, which becomes our one line: give its logger a handler so nothing else is printed
    # (an application that configured logging still gets the records).
    paramiko_log = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in paramiko_log.handlers):
        paramiko_log.addHandler(logging.NullHandler())
    known = Path(os.path.expanduser(str(known_hosts or "~/.ssh/known_hosts")))
    connect_kwargs = {"banner_timeout": timeout, "auth_timeout": timeout}
    if key:
        connect_kwargs.update(key_filename=str(key), look_for_keys=False, allow_agent=False)
    conn = fabric.Connection(hostname, user=user or None, port=port, connect_timeout=int(timeout),
                             connect_kwargs=connect_kwargs)
    conn.client = strict_client(known)  # Fabric's own client auto-adds unknown host keys: replace it
    hop = conn.gateway  # a ProxyJump of ~/.ssh/config: Fabric made those connections with auto-adding clients too
    while isinstance(hop, fabric.Connection):
        hop.client = strict_client(known)
        hop = hop.gateway
    label = _host_label(hostname, port)
    try:
        conn.open()
    except paramiko.BadHostKeyException as e:
        if e.key.asbytes() in conn.client.revoked:
            raise RevokedHostKey(f"host key of {label} ({e.key.get_name()} {fingerprint(e.key)}) is marked @revoked "
                                 f"in {known}: refusing to connect") from None
        raise ChangedHostKey(
            f"host key of {label} CHANGED: the server offers {e.key.get_name()} {fingerprint(e.key)} but {known} has "
            f"{fingerprint(e.expected_key)}; refusing to connect (this is what a man-in-the-middle looks like). If the "
            f"Pi was reinstalled, remove the old key with ssh-keygen -R '{label}' -f {known}, check the new "
            f"fingerprint on the Pi and add it") from None
    except paramiko.AuthenticationException as e:
        if key:
            raise UserError(f"SSH login as {conn.user}@{label} with --key {key_filename} was refused ({e}): install "
                            f"its public key on the Pi (ssh-copy-id -i {key}.pub -p {port} {conn.user}@{hostname})"
                            ) from None
        raise UserError(f"SSH login as {conn.user}@{label} failed ({e}): install your public key on the Pi "
                        f"(ssh-copy-id -p {port} {conn.user}@{hostname}) or pass --key") from None
    except (socket.timeout, TimeoutError) as e:
        raise UserError(f"connecting to {label} timed out ({e}): check the address and that the Pi is on") from None
    except (paramiko.SSHException, OSError, EOFError) as e:
        if isinstance(e, UserError):
            raise
        if "No authentication methods available" in str(e):  # no --key, no agent, no ~/.ssh/id_* key
            raise UserError(f"no SSH key to log in to {label} with: pass --key PRIVATE_KEY, or load one into "
                            f"ssh-agent (ssh-add), or make one (ssh-keygen -t ed25519) and install it on the Pi "
                            f"(ssh-copy-id -p {port} {conn.user}@{hostname})") from None
        if "protocol banner" in str(e):  # the port answered, but not as SSH (closed at once, HTTP, ...)
            raise UserError(f"{label} does not answer as an SSH server ({e}): check the port (--port, default 22) "
                            f"and that sshd runs on the Pi") from None
        raise UserError(f"cannot connect to {label}: {e}; check the address, the port and that sshd runs") from None
    return conn


# --- the bundle, checked whole before anything is sent ------------------------------------------

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
    parse_host(host, port)
    check_key(key_filename)
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
