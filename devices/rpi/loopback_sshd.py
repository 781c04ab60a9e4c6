"""A real OpenSSH server on 127.0.0.1 whose sessions run on the emulated Raspberry Pi.

Each SSH session's command goes through a ``ForceCommand`` wrapper into the emulated arm64 root
(devices/rpi/emulated_root.py), so a client talking to it sees an aarch64 Debian bookworm machine
with a home folder of its own: ``invoke deploy`` is tested end to end over real SSH.

The server has its own host key, authorized_keys and config in a private folder outside /tmp
(sshd's StrictModes refuses key files under a world-writable folder), listens on a free high port
of 127.0.0.1 only, allows public-key login only and runs as root (sshd needs root for privilege
separation; it needs /run/sshd, created here if missing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from devices.rpi.emulated_root import ENTER_SCRIPT, EmulatedPi, cache_dir
from runtime.errors import MissingDependency, UserError

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def strict_modes_safe(folder: Path) -> bool:
    """Whether sshd's StrictModes accepts key files in ``folder``: every folder from it up to / must be
    owned by root or by us and writable by nobody else (a world-writable /tmp anywhere above fails)."""
    me = os.geteuid()
    for part in [folder.resolve(), *folder.resolve().parents]:
        st = part.stat()
        if st.st_uid not in (0, me) or st.st_mode & 0o022:
            return False
    return True


def _server_base() -> Path:
    """The cache's sshd folder when StrictModes accepts it (e.g. ~/.cache), else a root-only folder
    under /run (the cache may point under /tmp, e.g. in tests)."""
    base = LoopbackSshd._state_base()
    if strict_modes_safe(base):
        return base
    fallback = Path("/run/rnn-edge-sshd")
    fallback.mkdir(mode=0o700, exist_ok=True)
    return fallback


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)


def _die_with_parent() -> None:
    """In the forked sshd, before exec: ask Linux to send it SIGTERM when its parent dies, so a
    killed owner (SIGKILL, a crash) does not leave a listening server with a test key behind."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LoopbackSshd:
    """``with LoopbackSshd(pi) as sshd:`` then connect to ``sshd.host`` (user@127.0.0.1), ``sshd.port``,
    with ``sshd.client_key`` and ``sshd.known_hosts``. The Pi's files live in ``sshd.pi.state``."""

    def __init__(self, pi: EmulatedPi, folder: Path | None = None):
        self.base_pi = pi
        self.folder = Path(folder) if folder else None
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._own_folder = folder is None

    # -- files ------------------------------------------------------------------------------------
    @property
    def client_key(self) -> Path:
        return self.folder / "client_ed25519"

    @property
    def host_key(self) -> Path:
        return self.folder / "ssh_host_ed25519_key"

    @property
    def known_hosts(self) -> Path:
        return self.folder / "known_hosts"

    @property
    def user(self) -> str:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name

    @property
    def host(self) -> str:
        return f"{self.user}@127.0.0.1"

    def known_hosts_line(self, key_file: Path | None = None) -> str:
        """The known_hosts line for this server's host key (or another public key, to fake a change)."""
        pub = Path(str(key_file or self.host_key) + ".pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n"

    def _write_files(self) -> None:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="loopback-", dir=_server_base()))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        if not strict_modes_safe(self.folder):
            raise UserError(f"sshd's StrictModes would refuse the keys in {self.folder}: a folder above it is "
                            f"writable by others; pass a folder under a root-owned, non-world-writable path")
        _keygen(self.host_key, "emulated-pi-host")
        _keygen(self.client_key, "rnn-edge-test-client")
        auth = self.folder / "authorized_keys"
        auth.write_text(Path(str(self.client_key) + ".pub").read_text())
        auth.chmod(0o600)
        # the Pi's files stay in the build cache (they can be large; /run may be a small tmpfs)
        self.pi_state = (Path(tempfile.mkdtemp(prefix="pi-", dir=self._state_base()))
                         if self._own_folder else self.folder / "pi")
        self.pi = self.base_pi.with_state(self.pi_state)
        session = self.folder / "pi-session"
        session.write_text(
            "#!/bin/sh\n"
            "# sshd ForceCommand: run this session's command (or a shell) on the emulated Raspberry Pi.\n"
            f"exec unshare --user --map-root-user --mount -- /bin/sh {ENTER_SCRIPT} "
            f"'{self.pi.root}' '{self.pi.fake}' '{self.pi.state}' "
            '/bin/sh -c "${SSH_ORIGINAL_COMMAND:-exec /bin/sh -i}"\n')
        session.chmod(0o700)
        self.port = _free_port()
        (self.folder / "sshd_config").write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"PidFile {self.folder / 'sshd.pid'}", f"AuthorizedKeysFile {auth}",
            f"AllowUsers {self.user}", "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes yes",
            f"ForceCommand {session}", "AllowTcpForwarding no", "AllowAgentForwarding no", "X11Forwarding no",
            "PermitUserEnvironment no", "LogLevel VERBOSE", ""]))
        self.known_hosts.write_text(self.known_hosts_line())

    # -- process ----------------------------------------------------------------------------------
    def start(self, timeout: float = 20) -> LoopbackSshd:
        if not os.path.exists(SSHD):
            raise MissingDependency("OpenSSH server", "apt-get install openssh-server")
        if os.geteuid() != 0:
            raise UserError("the loopback sshd must run as root (privilege separation): run the tests as root")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        self._write_files()
        config = self.folder / "sshd_config"
        test = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
        if test.returncode != 0:
            raise UserError(f"sshd refused its test config: {test.stderr.strip()}")
        log = open(self.folder / "sshd.log", "ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UserError(f"sshd exited at start (exit {self.proc.returncode}): see {self.folder}/sshd.log")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return self
            time.sleep(0.1)
        self.stop()
        raise UserError(f"sshd did not answer on 127.0.0.1:{self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @staticmethod
    def _state_base() -> Path:
        base = cache_dir() / "sshd"
        base.mkdir(parents=True, exist_ok=True)
        return base

    def remove(self) -> None:
        """Stop and delete the server's folder (keys, config) and the Pi's files."""
        self.stop()
        if self.folder is not None and self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            shutil.rmtree(self.pi_state, ignore_errors=True)

    def __enter__(self) -> LoopbackSshd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.remove()
