"""SSH to the Pi with strict host-key checking: the ``--host`` / ``--port`` / ``--key`` options checked
before anything is sent, ``known_hosts`` read as OpenSSH does (``@revoked`` honoured, ``@cert-authority``
skipped), and a Fabric connection whose clients (ProxyJump hops too) refuse any key not listed there.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import os
import socket
from pathlib import Path

from runtime.errors import MissingDependency, UserError

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
