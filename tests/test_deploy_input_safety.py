"""Deploy input safety (black-box pass): --dir, ports, keys, known_hosts, the local bundle check, IPv6.

No emulated Pi: the SSH tests talk to a throwaway paramiko server on 127.0.0.1 (``FakePi`` below)
whose sessions run ``/bin/sh -c`` in a temporary home folder, with a ``uname`` that answers the
machine the test chooses. Keys are made with ``cryptography`` (no ssh-keygen, ~/.ssh untouched).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

paramiko = pytest.importorskip("paramiko")  # the deploy extra: pip install 'rnn-edge[deploy]'
pytest.importorskip("fabric")
from cryptography.hazmat.primitives import serialization  # noqa: E402 - (paramiko's own dependency)
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402

from devices.rpi import bundle_verify, ssh  # noqa: E402
from devices.rpi import deploy as d  # noqa: E402
from devices.rpi.bundle import SUMS, load_bundle, tarball_bytes, write_sums, write_tarball  # noqa: E402
from runtime import atomic  # noqa: E402
from runtime.errors import UserError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# --- keys, a fake Pi over SSH, a tiny bundle ---------------------------------------------------

def _new_key(path: Path, passphrase: bytes | None = None) -> paramiko.PKey:
    """An ed25519 private key in OpenSSH format at ``path`` (+ ``.pub``); returns it loaded."""
    key = ed25519.Ed25519PrivateKey.generate()
    enc = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, enc))
    path.chmod(0o600)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    path.with_name(path.name + ".pub").write_bytes(pub + b" test\n")
    return paramiko.Ed25519Key.from_private_key_file(str(path), password=passphrase)


def _pump(read, write) -> None:
    for block in iter(lambda: read(1 << 16), b""):
        write(block)


class _Session(paramiko.ServerInterface):
    def __init__(self, pi: FakePi):
        self.pi = pi

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        ok = key.asbytes() == self.pi.client_key.asbytes()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        threading.Thread(target=self.pi.execute, args=(channel, command.decode()), daemon=True).start()
        return True


class FakePi:
    """An SSH server on 127.0.0.1 that runs each command with ``/bin/sh`` in ``home``; ``uname -m``
    answers ``machine``. Every command line run is kept in ``commands``."""

    def __init__(self, tmp: Path, machine: str = "aarch64", address: str = "127.0.0.1"):
        self.home = tmp / "home"
        self.home.mkdir()
        self.bin = tmp / "bin"
        self.bin.mkdir()
        (self.bin / "uname").write_text(f"#!/bin/sh\necho {machine}\n")
        (self.bin / "uname").chmod(0o755)
        self.host_key = _new_key(tmp / "host_key")
        self.key_file = tmp / "client_key"
        self.client_key = _new_key(self.key_file)
        self.commands: list[str] = []
        self.sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        self.sock.bind((address, 0))
        self.sock.listen(8)
        self.address, self.port = address, self.sock.getsockname()[1]
        self.known_hosts = tmp / "known_hosts"
        self.known_hosts.write_text(self.known_line())
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def known_line(self, key: paramiko.PKey | None = None, host: str | None = None) -> str:
        key = key or self.host_key
        return f"{host or f'[{self.address}]:{self.port}'} {key.get_name()} {key.get_base64()}\n"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = paramiko.Transport(conn)
            t.add_server_key(self.host_key)
            self.transports.append(t)
            try:
                t.start_server(server=_Session(self))
            except (paramiko.SSHException, EOFError, OSError):
                continue

    def execute(self, channel, command: str) -> None:
        self.commands.append(command)
        # python3: this interpreter (the venv step runs `python3 -m venv`)
        env = {"HOME": str(self.home), "PATH": f"{self.bin}:{Path(sys.executable).parent}:/usr/bin:/bin",
               "LC_ALL": "C"}
        proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=self.home, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def feed():
            try:
                _pump(channel.recv, proc.stdin.write)
                proc.stdin.close()
            except (OSError, EOFError):
                pass
        threading.Thread(target=feed, daemon=True).start()
        out = threading.Thread(target=_pump, args=(proc.stdout.read1, channel.sendall))
        out.start()
        _pump(proc.stderr.read1, channel.sendall_stderr)
        out.join()
        channel.send_exit_status(proc.wait())
        channel.close()

    def close(self) -> None:
        self.sock.close()
        for t in self.transports:
            t.close()


@pytest.fixture
def fake_pi(tmp_path):
    pi = FakePi(tmp_path)
    yield pi
    pi.close()


@pytest.fixture
def x86_pi(tmp_path):
    pi = FakePi(tmp_path, machine="x86_64")
    yield pi
    pi.close()


def _make_bundle(out: Path, name: str = "rnn-edge-pi"):
    """A minimal bundle as `invoke bundle` lays it out (no models needed): folder + tarball."""
    folder = out / name
    (folder / "artifacts" / "m").mkdir(parents=True)
    (folder / "artifacts" / "m" / "model.onnx").write_bytes(b"model bytes " * 100)
    (folder / "requirements.txt").write_text("# no pins: the fake Pi's venv needs nothing installed\n")
    atomic.write_json(folder / "BUNDLE.json", {"format": "rnn-edge-pi-bundle/1", "name": name, "artifacts": {}})
    write_sums(folder)
    write_tarball(folder, out / f"{name}.tar.gz")
    return load_bundle(folder)


@pytest.fixture
def bundle(tmp_path):
    return _make_bundle(tmp_path / "dist")


def _deploy(pi: FakePi, bundle, stop_at: str | None = None, host: str = "pi@127.0.0.1", **kw):
    """Deploy to the fake Pi; ``stop_at``: Ctrl-C before that step."""
    def step(name):
        if name == stop_at:
            raise KeyboardInterrupt
    kw.setdefault("known_hosts", pi.known_hosts)
    kw.setdefault("key_filename", pi.key_file)
    kw.setdefault("port", pi.port)
    return d.deploy(bundle, host, progress=False, on_step=step, **kw)


def _cli(*args, cwd=REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "devices.rpi", "deploy", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    """The error line of a failed deploy; anything else on stderr may only be its step lines ("[ 0.1 s] connect")."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and "Exception" not in r.stderr, r.stderr
    assert lines and lines[-1].startswith("error: "), r.stderr
    assert all(line.startswith("[") and line.endswith(tuple(d.STEPS)) for line in lines[:-1]), r.stderr
    return lines[-1]


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}



# --- 1. --dir: a folder of its own, checked before anything changes; rm only in ours ----------

@pytest.mark.parametrize("bad", ["/", "", ".", "./", "//", "/./", "~", "~/", "~/.", "a/..", "../x", "a/../../b",
                                 "~root/x", "-rf", "a\nb"])
def test_dir_that_is_not_a_folder_of_its_own_is_refused(bad, fake_pi, bundle):
    """Black box: --dir / and --dir "" became `.`, the home folder, and the Pi ran rm -rf ./incoming/*
    (a user's ~/incoming/precious.txt was deleted) before even checking the machine."""
    with pytest.raises(UserError, match="--dir"):
        d.remote_folder(bad)
    (fake_pi.home / "incoming").mkdir()
    (fake_pi.home / "incoming" / "precious.txt").write_text("mine")
    with pytest.raises(UserError, match="--dir"):
        _deploy(fake_pi, bundle, remote_dir=bad)
    assert fake_pi.commands == [] and fake_pi.transports == []  # refused before connecting
    assert _tree(fake_pi.home) == {"incoming": None, "incoming/precious.txt": b"mine"}


def test_dir_forms_that_are_accepted():
    assert d.remote_folder("rnn-edge") == "rnn-edge"
    assert d.remote_folder("~/rnn-edge/") == "rnn-edge"
    assert d.remote_folder("apps//./rnn-edge") == "apps/rnn-edge"
    assert d.remote_folder("/opt/rnn-edge") == "/opt/rnn-edge"


def test_dir_on_the_pi_that_is_the_home_or_not_ours_is_refused_and_kept(fake_pi, bundle):
    (fake_pi.home / "mine" / "incoming").mkdir(parents=True)
    (fake_pi.home / "mine" / "incoming" / "precious.txt").write_text("mine")
    (fake_pi.home / "a-file").write_text("x")
    before = _tree(fake_pi.home)
    for remote_dir, match in (("mine", "was not made by deploy"), (str(fake_pi.home), "is the home folder"),
                              (str(fake_pi.home) + "/mine/..", "'..'"), ("a-file", "is not a folder")):
        with pytest.raises(UserError, match=match):
            _deploy(fake_pi, bundle, remote_dir=remote_dir)
        assert _tree(fake_pi.home) == before, remote_dir


def test_the_machine_is_checked_before_anything_changes(x86_pi, bundle):
    (x86_pi.home / "rnn-edge" / "incoming").mkdir(parents=True)  # even a folder of ours is left alone
    (x86_pi.home / "rnn-edge" / d.MARKER).write_text("")
    (x86_pi.home / "rnn-edge" / "incoming" / "upload").write_text("x")
    before = _tree(x86_pi.home)
    with pytest.raises(UserError, match=r"not aarch64.*nothing was changed on the Pi \(uname -m says x86_64\)"):
        _deploy(x86_pi, bundle)
    assert _tree(x86_pi.home) == before


def test_deploy_folder_is_marked_and_only_a_marked_one_is_emptied_or_pruned(fake_pi, bundle):
    with pytest.raises(KeyboardInterrupt):
        _deploy(fake_pi, bundle, stop_at="upload")  # a new folder: created and marked
    base = fake_pi.home / "rnn-edge"
    assert (base / d.MARKER).is_file() and {p.name for p in base.iterdir()} >= {"releases", "venvs", "incoming"}
    (base / "incoming" / "stale").mkdir()
    with pytest.raises(KeyboardInterrupt):
        _deploy(fake_pi, bundle, stop_at="upload")
    assert not (base / "incoming" / "stale").exists()  # ours: stale uploads are cleared

    # a deploy folder of an earlier version (no marker) is recognised by its layout and adopted
    old = fake_pi.home / "old"
    (old / "releases" / "r1").mkdir(parents=True)
    (old / "incoming" / "stale").mkdir(parents=True)
    (old / "current").symlink_to("releases/r1")
    with pytest.raises(KeyboardInterrupt):
        _deploy(fake_pi, bundle, stop_at="upload", remote_dir="old")
    assert (old / d.MARKER).is_file() and not (old / "incoming" / "stale").exists()

    # prune refuses a folder without the marker
    (fake_pi.home / "other" / "releases" / "keep").mkdir(parents=True)
    conn = ssh.connect("pi@127.0.0.1", port=fake_pi.port, known_hosts=fake_pi.known_hosts, key_filename=fake_pi.key_file)
    try:
        with pytest.raises(UserError, match="pruning old releases failed"):
            d._prune(d._Remote(conn), "other", "new", None)
    finally:
        conn.close()
    assert (fake_pi.home / "other" / "releases" / "keep").is_dir()


def test_a_whole_deploy_to_the_fake_pi_still_works(fake_pi, bundle, tmp_path):
    """Upload, sha256 on the Pi, unpack, venv, switch and prune in a marked folder, twice."""
    first = _deploy(fake_pi, bundle, results_dir=tmp_path / "results")
    second = _deploy(fake_pi, bundle, results_dir=tmp_path / "results")
    base = fake_pi.home / "rnn-edge"
    assert second.previous == first.release and os.readlink(base / "current") == f"releases/{second.release}"
    assert {p.name for p in (base / "releases").iterdir()} == {first.release, second.release}
    assert not list((base / "incoming").iterdir()) and not (base / ".deploy-lock").exists()


# --- 2. a port that is not SSH: our one line, no paramiko log or traceback --------------------

@pytest.mark.parametrize("answer", [b"", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"])
def test_a_port_that_is_not_ssh_is_one_line(answer, fake_pi, bundle):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(answer)
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        r = _cli(bundle.folder, "--host", "pi@127.0.0.1", "--port", server.getsockname()[1], "--known-hosts",
                 fake_pi.known_hosts, "--key", fake_pi.key_file)
    finally:
        server.close()
    assert "does not answer as an SSH server" in _one_error_line(r)


# --- 3. --port 0 ---------------------------------------------------------------------------------

def test_port_zero_is_refused_not_read_as_22(bundle, tmp_path):
    for host, port in (("pi@127.0.0.1", 0), ("pi@127.0.0.1:0", None), ("pi@127.0.0.1", 65536)):
        with pytest.raises(UserError, match="out of range: choose 1 to 65535"):
            ssh.connect(host, port=port, known_hosts=tmp_path / "none")
    with pytest.raises(UserError, match="names port 2222 but --port is 22"):
        ssh.parse_host("pi@127.0.0.1:2222", 22)
    assert ssh.parse_host("pi@127.0.0.1") == ("pi", "127.0.0.1", 22)
    r = _cli(bundle.folder, "--host", "pi@127.0.0.1", "--port", "0", "--known-hosts", tmp_path / "none")
    assert _one_error_line(r) == "error: SSH port 0 is out of range: choose 1 to 65535 (default 22)"


# --- 4. --key: checked here, the real cause named ----------------------------------------------

def test_key_problems_are_named_before_connecting(fake_pi, bundle, tmp_path):
    (tmp_path / "garbage").write_text("not a key\n")
    _new_key(tmp_path / "locked", passphrase=b"secret words")
    cases = {tmp_path / "missing": "no such file", tmp_path: "is a folder, not a key file",
             tmp_path / "garbage": "is not a private key paramiko can read",
             Path(str(fake_pi.key_file) + ".pub"): r"is a public key: pass the private key beside it \(client_key\)",
             tmp_path / "locked": r"protected by a passphrase.*ssh-agent \(ssh-add .*locked\) and deploy without --key"}
    for key, match in cases.items():
        with pytest.raises(UserError, match=match):
            _deploy(fake_pi, bundle, key_filename=key)
    assert fake_pi.transports == []  # every one refused before connecting
    r = _cli(bundle.folder, "--host", "pi@127.0.0.1", "--port", fake_pi.port, "--known-hosts", fake_pi.known_hosts,
             "--key", tmp_path / "locked")
    assert "protected by a passphrase" in _one_error_line(r)


def test_a_refused_key_and_no_key_at_all_say_so(fake_pi, bundle, tmp_path):
    _new_key(tmp_path / "stranger")
    with pytest.raises(UserError, match=r"with --key .*stranger was refused .*ssh-copy-id -i .*stranger\.pub") as e:
        _deploy(fake_pi, bundle, key_filename=tmp_path / "stranger")
    assert "pass --key" not in str(e.value)
    home = tmp_path / "empty-home"  # no ~/.ssh keys and no agent
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    r = subprocess.run([sys.executable, "-m", "devices.rpi", "deploy", str(bundle.folder), "--host", "pi@127.0.0.1",
                        "--port", str(fake_pi.port), "--known-hosts", str(fake_pi.known_hosts)], capture_output=True,
                       text=True, cwd=REPO, env=dict(env, HOME=str(home), PYTHONPATH=str(REPO)), timeout=120)
    assert "no SSH key to log in" in _one_error_line(r)


# --- 5. known_hosts markers ------------------------------------------------------------------------

def test_known_hosts_markers(fake_pi, bundle, tmp_path):
    ca, other = _new_key(tmp_path / "ca"), _new_key(tmp_path / "other")
    known = tmp_path / "known_hosts"
    known.write_text(f"@cert-authority *.example {ca.get_name()} {ca.get_base64()}\n"
                     f"@revoked * {other.get_name()} {other.get_base64()}\n"
                     "# a comment\n" + fake_pi.known_line())
    with pytest.raises(KeyboardInterrupt):  # connected: the markers neither broke the file nor added trust
        _deploy(fake_pi, bundle, known_hosts=known, stop_at="prepare")

    key_part = fake_pi.known_line().split(" ", 1)[1]  # "ssh-ed25519 AAAA..."
    known.write_text(fake_pi.known_line() + f"@revoked [127.0.0.1]:{fake_pi.port} {key_part}")
    with pytest.raises(ssh.RevokedHostKey, match="is marked @revoked"):
        _deploy(fake_pi, bundle, known_hosts=known)
    known.write_text(f"@revoked * {fake_pi.host_key.get_name()} {fake_pi.host_key.get_base64()}\n")
    with pytest.raises(ssh.RevokedHostKey, match="is marked @revoked"):
        _deploy(fake_pi, bundle, known_hosts=known)
    known.write_text(fake_pi.known_line(other) + f"@revoked * {fake_pi.host_key.get_name()} "
                                                 f"{fake_pi.host_key.get_base64()}\n")
    with pytest.raises(ssh.RevokedHostKey, match="is marked @revoked"):
        _deploy(fake_pi, bundle, known_hosts=known)
    assert fake_pi.commands == []

    for bad, match in ((fake_pi.known_line() + "raspberrypi ssh-ed25519 not-base64!!\n", "cannot read known hosts"),
                       ("@revoked * ssh-ed25519 not-base64!!\n" + fake_pi.known_line(), "cannot read known hosts"),
                       ("@revoked\n" + fake_pi.known_line(), "unknown marker|not understood"),
                       ("@trusted * " + fake_pi.known_line().split(" ", 1)[1], "unknown marker '@trusted'")):
        known.write_text(bad)
        with pytest.raises(UserError, match=match):
            _deploy(fake_pi, bundle, known_hosts=known)


# --- 6. the whole bundle is checked before connecting -----------------------------------------

def _repack_with_modified_model(b):
    """Black box: a tarball re-packed from a copy with one model byte changed (same BUNDLE.json and
    SHA256SUMS) passed the local check and was only refused on the Pi after the upload."""
    copy = b.folder.parent / "copy" / b.name
    shutil.copytree(b.folder, copy)
    model = copy / "artifacts" / "m" / "model.onnx"
    model.write_bytes(b"X" + model.read_bytes()[1:])
    b.tarball.write_bytes(tarball_bytes(copy, b.name))


@pytest.mark.parametrize("change, match", [
    (lambda b: (b.folder / "artifacts" / "m" / "model.onnx").write_bytes(b"changed"),
     "model.onnx differs from its sha256"),
    (lambda b: (b.folder / "artifacts" / "m" / "extra.bin").write_bytes(b"x"), "extra.bin is not listed"),
    (lambda b: (b.folder / "requirements.txt").write_text("numpy==1.0\n"), "requirements.txt differs from its sha256"),
    (lambda b: (b.folder / "artifacts" / "m" / "model.onnx").unlink(), "model.onnx is listed .* but missing"),
    (_repack_with_modified_model, "was not built from the folder .*model.onnx differs in it"),
])
def test_the_bundle_is_checked_whole_before_connecting(change, match, fake_pi, tmp_path):
    b = _make_bundle(tmp_path / "t")
    change(b)
    with pytest.raises(UserError, match=match):
        _deploy(fake_pi, b.folder)
    with pytest.raises(UserError, match=match):
        _deploy(fake_pi, b)  # a Bundle object handed in is checked as well
    assert fake_pi.transports == []  # nothing was sent


def test_a_tarball_with_an_extra_member_is_refused(fake_pi, tmp_path):
    b = _make_bundle(tmp_path / "t")
    copy = tmp_path / "copy" / b.name
    shutil.copytree(b.folder, copy)
    (copy / "runtime.py").write_text("import os\n")
    b.tarball.write_bytes(tarball_bytes(copy, b.name))
    with pytest.raises(UserError, match="runtime.py is in it but not in the folder"):
        _deploy(fake_pi, b)
    assert fake_pi.transports == []


def test_the_verified_bytes_are_what_deploy_uses(tmp_path):
    b = _make_bundle(tmp_path / "t")
    checked, requirements = bundle_verify.verify_bundle(b)
    assert requirements == (b.folder / "requirements.txt").read_bytes()
    assert checked.sha256 == b.sha256 and checked.info == b.info
    (b.folder / SUMS).write_text((b.folder / SUMS).read_text() + "0" * 64 + "  ../outside\n")
    with pytest.raises(UserError, match="line 4 is not"):
        bundle_verify.verify_bundle(b)


# --- 7. IPv6 -----------------------------------------------------------------------------------

def test_ipv6_host_forms():
    assert ssh.parse_host("pi@[::1]:2222") == ("pi", "::1", 2222)
    assert ssh.parse_host("pi@[::1]") == ("pi", "::1", 22)
    assert ssh.parse_host("pi@fe80::1") == ("pi", "fe80::1", 22)
    assert ssh.parse_host("pi@fe80::1%eth0", 2222) == ("pi", "fe80::1%eth0", 2222)
    assert ssh.parse_host("pi@::1") == ("pi", "::1", 22)
    assert ssh.parse_host("raspberrypi.local:2200") == ("", "raspberrypi.local", 2200)
    for bad in ("pi@[::1", "pi@[::1]2222", "pi@[raspberrypi]:22", "pi@fe80::zz::1", "pi@::1:2222:x"):
        with pytest.raises(UserError, match=r"pi@\[fe80::1\]:22"):
            ssh.parse_host(bad)
    for bad in ("pi@[::1]:", "pi@host:", "pi@host:x"):
        with pytest.raises(UserError, match="must be a number"):
            ssh.parse_host(bad)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_deploy_connects_over_ipv6(tmp_path, bundle):
    pi = FakePi(tmp_path, address="::1")
    try:
        for host, port in ((f"pi@[::1]:{pi.port}", None), ("pi@::1", pi.port)):
            with pytest.raises(KeyboardInterrupt):  # connected, host key checked: enough
                _deploy(pi, bundle, stop_at="prepare", host=host, port=port)
        assert len(pi.transports) == 2
    finally:
        pi.close()


def test_a_results_folder_that_cannot_be_written_is_refused_before_connecting(fake_pi, tmp_path):
    """--results was first written after the switch: the deploy then failed with the new release live."""
    bundle = _make_bundle(tmp_path / "dist")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write --results"):
        _deploy(fake_pi, bundle, results_dir=blocker / "results")
    assert fake_pi.commands == [] and not (fake_pi.home / "rnn-edge").exists()


def test_a_failure_after_the_switch_says_the_new_release_is_active(fake_pi, tmp_path, monkeypatch):
    """A failing prune (or results write) after the switch was reported as a plain failure, exit 2,
    though the new release was live: the message now says so."""
    bundle = _make_bundle(tmp_path / "dist")

    def prune_fails(*a):
        raise UserError("cannot prune old releases: Permission denied")
    monkeypatch.setattr(d, "_prune", prune_fails)
    with pytest.raises(UserError, match=r"Permission denied; release \S+ is active on the Pi all the same") as e:
        _deploy(fake_pi, bundle, results_dir=tmp_path / "results")
    assert "\n" not in str(e.value)
    current = fake_pi.home / "rnn-edge" / "current"
    assert current.is_symlink() and os.readlink(current).startswith("releases/")
