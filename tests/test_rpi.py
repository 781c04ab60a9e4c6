"""Raspberry Pi: bundle, SSH deploy to an emulated aarch64 Pi over a real sshd, aarch64 parity.

The emulated Pi (devices/rpi/emulated_root.py) is built once and cached under ~/.cache/rnn-edge
(~20 s the first time). The deploy tests talk to it through a loopback OpenSSH server whose
sessions run inside it (devices/rpi/loopback_sshd.py): real SSH, real aarch64 code under
qemu-user. They need root (sshd, mmdebstrap, namespaces) and the apt packages mmdebstrap,
qemu-user-static and openssh-server, as CI has.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from devices.rpi import deploy as D
from devices.rpi import emulated_root as er
from devices.rpi.bundle import SUMS, load_bundle, make_bundle, write_tarball
from devices.rpi.deploy import DeployInterrupted, deploy
from devices.rpi.pins import PI_PLATFORM_TAGS, pi_requirements, pyproject_pins
from devices.rpi.ssh import ChangedHostKey, UnknownHostKey, connect, strict_client
from runtime.errors import UserError
from runtime.manifest import sha256_of


def _missing_tools() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mmdebstrap --mode=root, sshd)"
    for tool, pkg in (("mmdebstrap", "mmdebstrap"), ("qemu-aarch64-static", "qemu-user-static"),
                      ("sshd", "openssh-server"), ("ssh-keygen", "openssh-client")):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} missing: apt-get install {pkg}"
    return None


needs_pi = pytest.mark.skipif(_missing_tools() is not None, reason=str(_missing_tools()))


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pi_root():
    """The cached emulated Raspberry Pi 4 root (built on first use)."""
    return er.emulated_pi(progress=False)


@pytest.fixture(scope="module")
def sshd(pi_root):
    """A loopback sshd on 127.0.0.1 whose sessions run on a fresh emulated Pi (own home folder)."""
    from devices.rpi.loopback_sshd import LoopbackSshd
    with LoopbackSshd(pi_root) as server:
        yield server


def _float_sequence_entry(folder) -> str:
    man = json.loads((folder / "manifest.json").read_text())
    for a in man["artifacts"]:
        if (a.get("runtime"), a.get("precision"), a.get("kind", "sequence"), a.get("status", "ok")) == \
                ("onnxruntime", "float32", "sequence", "ok"):
            return a["name"]
    raise AssertionError(f"no ok float32 ONNX sequence artifact in {folder}")


@pytest.fixture(scope="module")
def small_bundle(fixture_artifacts, tmp_path_factory):
    """A bundle with the GRU's float ONNX artifact and its int8 C (each with its step companion; the C
    with its library cross-compiled for aarch64): quick to check on the Pi."""
    folder = fixture_artifacts("gru")
    return make_bundle([folder], out_dir=tmp_path_factory.mktemp("bundle"),
                       artifacts=[_float_sequence_entry(folder), "c-int8"])


def _deploy(sshd, bundle, **kw):
    return deploy(bundle, sshd.host, port=sshd.port, known_hosts=sshd.known_hosts, key_filename=sshd.client_key,
                  progress=False, bench_repeats=3, **kw)


def _on_pi(sshd, cmd: str):
    conn = connect(sshd.host, port=sshd.port, known_hosts=sshd.known_hosts, key_filename=sshd.client_key)
    try:
        return conn.run(cmd, hide=True, warn=True, in_stream=False)
    finally:
        conn.close()


def _active(sshd) -> str:
    link = sshd.pi.host_path("/home/pi/rnn-edge/current")
    return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else ""


def _assert_active_release_works(sshd, bundle) -> None:
    """The active release passes `python -m runtime check` on the Pi."""
    folder = sorted(bundle.info["artifacts"])[0]
    r = _on_pi(sshd, f"cd rnn-edge/current && venv/bin/python -m runtime check artifacts/{folder} --json")
    assert r.exited == 0, r.stderr
    verdicts = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert verdicts and all(v["verdict"] == "ok" for v in verdicts), verdicts


# --- pins and the emulated root's recipe (no emulation) ----------------------------------------

def test_pi_requirements_are_pinned_from_pyproject():
    pins = pyproject_pins()
    reqs = pi_requirements(["onnxruntime", "litert", "tflm", "c"])
    assert reqs == [f"numpy=={pins['numpy']}", f"ai-edge-litert=={pins['ai-edge-litert']}",
                    f"onnxruntime=={pins['onnxruntime']}"]
    assert "manylinux_2_27_aarch64" in PI_PLATFORM_TAGS and "manylinux_2_36_aarch64" in PI_PLATFORM_TAGS
    assert "manylinux_2_37_aarch64" not in PI_PLATFORM_TAGS  # bookworm has glibc 2.36


def test_mirror_is_read_from_apt_sources(tmp_path, monkeypatch):
    monkeypatch.delenv(er.MIRROR_ENV, raising=False)
    (tmp_path / "a.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n")
    monkeypatch.setattr(er, "_apt_source_files", lambda: [tmp_path / "missing.list", tmp_path / "a.sources"])
    assert er.debian_mirror() == "http://mirror.example/debian"
    (tmp_path / "b.list").write_text("# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n")
    monkeypatch.setattr(er, "_apt_source_files", lambda: [tmp_path / "b.list"])
    assert er.debian_mirror() == "http://one.example/debian"
    monkeypatch.setattr(er, "_apt_source_files", lambda: [])
    with pytest.raises(UserError, match=er.MIRROR_ENV):
        er.debian_mirror()


def test_fake_cpu_is_a_pi4(tmp_path):
    info = er.fake_cpuinfo()
    assert info.count("CPU part\t: 0xd08") == 4  # Cortex-A72
    assert "Raspberry Pi 4" in info
    er.write_fake_cpu_sysfs(tmp_path)
    assert (tmp_path / "possible").read_text() == "0-3\n"
    assert (tmp_path / "cpu3" / "cpufreq" / "cpuinfo_max_freq").read_text() == "1800000\n"


# --- bundle (no emulation) ----------------------------------------------------------------------

def test_bundle_contents_and_sums(fixture_artifacts, tmp_path):
    folder = fixture_artifacts("gru")
    b = make_bundle([folder], out_dir=tmp_path)
    man = json.loads((b.folder / "artifacts" / folder.name / "manifest.json").read_text())
    assert man["artifacts"] and {a["format"] for a in man["artifacts"]} == {"onnx", "tflite", "c"}
    for a in man["artifacts"]:
        assert sha256_of(b.folder / "artifacts" / folder.name / a["file"]) == a["sha256"]
    for a in (a for a in man["artifacts"] if a["format"] == "c"):  # source, header and aarch64 library
        src = b.folder / "artifacts" / folder.name / a["file"]
        lib = a["c"]["prebuilt"]["aarch64"]
        assert (src.parent / a["c"]["header"]).is_file() and sha256_of(src.parent / lib["file"]) == lib["sha256"]
        assert (src.parent / lib["file"]).read_bytes()[:4] == b"\x7fELF"
    assert (b.folder / "runtime" / "__init__.py").is_file() and not list(b.folder.rglob("__pycache__"))
    reqs = (b.folder / "requirements.txt").read_text().split()
    assert "numpy==" + pyproject_pins()["numpy"] in reqs
    sums = dict(reversed(line.split("  ", 1)) for line in (b.folder / SUMS).read_text().splitlines())
    files = {p.relative_to(b.folder).as_posix() for p in b.folder.rglob("*") if p.is_file() and p.name != SUMS}
    assert set(sums) == files and all(sha256_of(b.folder / f) == h for f, h in sums.items())
    with tarfile.open(b.tarball) as tar:
        assert {m.name for m in tar.getmembers() if m.isfile()} == {f"{b.name}/{f}" for f in files | {SUMS}}
    assert load_bundle(b.folder).sha256 == load_bundle(b.tarball).sha256 == b.sha256


def test_bundle_is_reproducible(fixture_artifacts, tmp_path):
    folder = fixture_artifacts("gru")
    a = make_bundle([folder], out_dir=tmp_path / "a")
    digest = write_tarball(a.folder, tmp_path / "copy.tar.gz")
    assert digest == a.sha256  # same folder -> byte-identical tarball


def test_bundle_output_and_pairing_are_checked(fixture_artifacts, tmp_path):
    """Audit: --name .. deleted the parent folder; a failed tarball write left a folder and a tarball of two
    builds, which deployed; a damaged tarball passed the sha256 step (computed from the damage)."""
    folder = fixture_artifacts("gru")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "precious.txt").write_text("mine")
    for name in ("..", ".", "", "a/b", ".hidden"):
        with pytest.raises(UserError, match="plain file name"):
            make_bundle([folder], out_dir=out, name=name, runtimes=("onnxruntime",))
    assert (tmp_path / "precious.txt").read_text() == "mine" and not list(out.iterdir())
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserError, match="cannot create the output folder"):
        make_bundle([folder], out_dir=tmp_path / "a-file" / "sub", runtimes=("onnxruntime",))
    (out / "b.tar.gz").mkdir()
    with pytest.raises(UserError, match="is a folder, not a tarball"):
        make_bundle([folder], out_dir=out, name="b", runtimes=("onnxruntime",))

    one = make_bundle([folder], out_dir=tmp_path / "one", runtimes=("onnxruntime",))
    two = make_bundle([folder], out_dir=tmp_path / "two", runtimes=("onnxruntime",), artifacts=["onnx-float32"])
    shutil.copy(two.tarball, one.tarball)  # folder of one build, tarball of another
    with pytest.raises(UserError, match="was not built with the folder"):
        load_bundle(one.folder)
    data = bytearray(two.tarball.read_bytes())
    data[len(data) // 2] ^= 0x10
    two.tarball.write_bytes(bytes(data))
    with pytest.raises(UserError, match="is damaged"):
        load_bundle(two.folder)
    (two.folder / "BUNDLE.json").write_text("[1]")
    with pytest.raises(UserError, match="BUNDLE.json has format 'list'"):
        load_bundle(two.folder)


def test_bundle_refuses_a_corrupted_artifact(fixture_artifacts, tmp_path):
    src = fixture_artifacts("gru")
    folder = tmp_path / src.name
    shutil.copytree(src, folder)
    entry = _float_sequence_entry(folder)
    file = next(a["file"] for a in json.loads((folder / "manifest.json").read_text())["artifacts"] if a["name"] == entry)
    data = bytearray((folder / file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / file).write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256"):
        make_bundle([folder], out_dir=tmp_path / "out", artifacts=[entry])
    assert not (tmp_path / "out" / "rnn-edge-pi").exists()


def test_bundle_errors_are_one_line(fixture_artifacts, tmp_path):
    folder = fixture_artifacts("gru")
    r = subprocess.run([sys.executable, "-m", "devices.rpi", "bundle", str(folder), "--out", str(tmp_path),
                        "--artifact", "no-such-artifact"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: no artifact named no-such-artifact")
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with pytest.raises(UserError, match="cannot run on the Pi"):
        make_bundle([folder], out_dir=tmp_path, runtimes=("tflm",))


def test_bundle_without_the_aarch64_compiler_names_the_package(fixture_artifacts, tmp_path, monkeypatch):
    """No cross compiler: the C cannot ship, one clear line (apt package, or leave c out); nothing is written.
    Without c the bundle builds as before."""
    import shutil as sh
    from devices.rpi import cross
    folder = fixture_artifacts("gru")
    real = sh.which
    monkeypatch.setattr(cross.shutil, "which", lambda name: None if name == cross.PI4.cc else real(name))
    with pytest.raises(UserError, match="gcc-aarch64-linux-gnu.*--runtimes onnxruntime,litert"):
        make_bundle([folder], out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "rnn-edge-pi").exists()
    b = make_bundle([folder], out_dir=tmp_path / "out", runtimes=("onnxruntime", "litert"))
    assert {e["format"] for e in b.info["artifacts"][folder.name]} == {"onnx", "tflite"}


def test_deploy_arguments_are_checked_before_connecting(small_bundle, tmp_path):
    """Audit: a port that is not a number and a bad known_hosts line were tracebacks; --bench-repeats 0 was
    refused by the Pi after upload, check and switch."""
    for host, match in (("pi@127.0.0.1:abc", "must be a number"), ("pi@127.0.0.1:99999", "out of range")):
        with pytest.raises(UserError, match=match):
            connect(host, known_hosts=tmp_path / "none")
    with pytest.raises(UserError, match="--bench-repeats 0"):
        deploy(small_bundle, "pi@127.0.0.1", bench_repeats=0, progress=False)
    bad = tmp_path / "known_hosts"
    bad.write_text("raspberrypi ssh-ed25519 not-base64!!\n")
    with pytest.raises(UserError, match="cannot read known hosts file"):
        strict_client(bad)


# --- strict host keys (real sshd) ---------------------------------------------------------------

@needs_pi
def test_deploy_refuses_an_unknown_host_key(sshd, small_bundle, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(UnknownHostKey, match=r"is not in .*refusing to connect") as e:
        deploy(small_bundle, sshd.host, port=sshd.port, known_hosts=empty, key_filename=sshd.client_key,
               progress=False)
    assert "SHA256:" in str(e.value)
    assert empty.read_text() == ""  # nothing auto-added
    assert not sshd.pi.host_path("/home/pi/rnn-edge").exists()  # never got past the handshake


@needs_pi
def test_deploy_refuses_a_changed_host_key(sshd, small_bundle, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line(other))
    with pytest.raises(ChangedHostKey, match="CHANGED"):
        deploy(small_bundle, sshd.host, port=sshd.port, known_hosts=known, key_filename=sshd.client_key,
               progress=False)
    r = subprocess.run([sys.executable, "-m", "devices.rpi", "deploy", str(small_bundle.folder), "--host", sshd.host,
                        "--port", str(sshd.port), "--known-hosts", str(known), "--key", str(sshd.client_key)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "error: host key of [127.0.0.1]" in r.stderr and "Traceback" not in r.stderr


# --- deploy end to end (real sshd, emulated aarch64 Pi) -----------------------------------------

@pytest.fixture(scope="module")
def first_deploy(sshd, small_bundle, tmp_path_factory):
    return _deploy(sshd, small_bundle, results_dir=tmp_path_factory.mktemp("results"))


@needs_pi
def test_deploy_end_to_end(sshd, small_bundle, first_deploy):
    r = first_deploy
    assert r.previous is None and _active(sshd) == r.release
    (folder, res), = r.results.items()
    assert res["check"] and all(v["verdict"] == "ok" for v in res["check"]), res["check"]
    checks = {v["artifact"]: v["metrics"] for v in res["check"]}
    assert set(checks) == {"onnx-float32", "onnx-float32-step", "c-int8", "c-int8-step"}  # the C from its aarch64 library
    assert all(checks[a]["max_abs_err"] <= 1e-4 for a in ("onnx-float32", "onnx-float32-step"))  # aarch64 vs PyTorch x86
    assert len(res["bench"]) == 2 and "c-int8" in res["bench"]
    for bench in res["bench"].values():
        assert bench["sequence"]["median_ms"] > 0 and bench["step"]["median_us"] > 0
    saved = json.loads((r.results_dir / "results.json").read_text())
    assert saved["machine"] == "aarch64" and saved["bundle_sha256"] == small_bundle.sha256
    home = sshd.pi.host_path("/home/pi/rnn-edge")
    assert not list((home / "incoming").iterdir())  # the upload folder is gone
    assert (home / "releases" / r.release / "venv" / "bin" / "python").exists()


@needs_pi
def test_corrupted_upload_is_detected_and_not_activated(sshd, small_bundle, first_deploy):
    def corrupt(step: str) -> None:
        if step == "verify":  # the upload arrived: flip one byte of it on the Pi
            (upload,) = sshd.pi.host_path("/home/pi/rnn-edge/incoming").glob("*/bundle.tar.gz")
            data = bytearray(upload.read_bytes())
            data[len(data) // 3] ^= 0x01
            upload.write_bytes(bytes(data))

    with pytest.raises(UserError, match="upload corrupted: sha256 on the Pi"):
        _deploy(sshd, small_bundle, on_step=corrupt)
    assert _active(sshd) == first_deploy.release
    releases = {p.name for p in sshd.pi.host_path("/home/pi/rnn-edge/releases").iterdir()}
    assert releases == {first_deploy.release}
    assert not list(sshd.pi.host_path("/home/pi/rnn-edge/incoming").iterdir())


@needs_pi
def test_corrupted_file_inside_the_bundle_is_detected_on_the_pi(sshd, small_bundle, first_deploy, tmp_path, monkeypatch):
    # A bundle damaged after it was summed (disk error, tampering): the tarball's own sha256 is
    # consistent, but SHA256SUMS checked on the Pi catches the file. The same damage is refused here
    # before connecting (verify_bundle, tests/test_deploy_input_safety.py); it is skipped so that the
    # Pi's own check, the one that guards a tarball changed after that, is tested too.
    bad = tmp_path / small_bundle.name
    shutil.copytree(small_bundle.folder, bad)
    model = next((bad / "artifacts").rglob("*.onnx"))
    data = bytearray(model.read_bytes())
    data[-10] ^= 0x01
    model.write_bytes(bytes(data))
    write_tarball(bad, tmp_path / f"{bad.name}.tar.gz")
    with pytest.raises(UserError, match="differs from its sha256 in SHA256SUMS"):
        D.verify_bundle(load_bundle(bad))
    monkeypatch.setattr(D, "verify_bundle", lambda b: (b, (b.folder / "requirements.txt").read_bytes()))
    with pytest.raises(UserError, match="sha256 check of the unpacked files"):
        _deploy(sshd, load_bundle(bad))
    assert _active(sshd) == first_deploy.release
    assert {p.name for p in sshd.pi.host_path("/home/pi/rnn-edge/releases").iterdir()} == {first_deploy.release}


@needs_pi
def test_interrupted_deploy_leaves_the_old_version_working(sshd, small_bundle, first_deploy):
    seen = []

    def interrupt(step: str) -> None:
        seen.append(step)
        if step == "check":  # uploaded, verified, unpacked, staged, venv ready: stop here (Ctrl-C)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _deploy(sshd, small_bundle, on_step=interrupt)
    assert seen[-3:] == ["unpack", "install", "check"]
    assert _active(sshd) == first_deploy.release
    assert {p.name for p in sshd.pi.host_path("/home/pi/rnn-edge/releases").iterdir()} == {first_deploy.release}
    _assert_active_release_works(sshd, small_bundle)


@needs_pi
def test_a_second_deploy_at_once_is_refused(sshd, small_bundle, first_deploy):
    """Audit: a deploy started while another uploaded emptied incoming/ under it. A lock now: the second one
    stops with one line and changes nothing; the lock is released after every deploy."""
    lock = sshd.pi.host_path("/home/pi/rnn-edge/.deploy-lock")
    assert not lock.exists()  # released by the deploys before
    lock.mkdir()
    try:
        with pytest.raises(UserError, match="another deploy to rnn-edge is running"):
            _deploy(sshd, small_bundle)
        assert lock.is_dir() and _active(sshd) == first_deploy.release
    finally:
        lock.rmdir()


@needs_pi
def test_interrupt_after_the_switch_says_the_new_release_is_active(sshd, small_bundle, first_deploy):
    """Audit: Ctrl-C after the switch said the Pi kept the previous release; it runs the new one."""
    def interrupt(step: str) -> None:
        if step == "bench":
            raise KeyboardInterrupt
    try:
        with pytest.raises(DeployInterrupted, match="interrupted after the switch: release .* is active") as e:
            _deploy(sshd, small_bundle, on_step=interrupt)
        assert _active(sshd) != first_deploy.release and _active(sshd) in str(e.value)
        _assert_active_release_works(sshd, small_bundle)
    finally:  # the tests after this one expect the first deploy to be active
        link = sshd.pi.host_path("/home/pi/rnn-edge/current")
        tmp = link.with_name("current.test")
        os.symlink(f"releases/{first_deploy.release}", tmp)
        os.replace(tmp, link)


@needs_pi
def test_a_proxyjump_hop_has_its_host_key_checked(sshd, small_bundle, tmp_path, monkeypatch):
    """Audit: a ProxyJump of ~/.ssh/config made Fabric connect to the jump host with an auto-adding client."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(f"Host pi-via-jump\n  HostName {sshd.host.rpartition('@')[2]}\n"
                                          f"  ProxyJump {sshd.host.rpartition('@')[0]}@localhost:{sshd.port}\n")
    monkeypatch.setenv("HOME", str(home))
    before = sshd.known_hosts.read_text()
    with pytest.raises(UnknownHostKey, match=r"\[localhost\]"):
        connect(f"{sshd.host.rpartition('@')[0]}@pi-via-jump", port=sshd.port, known_hosts=sshd.known_hosts,
                key_filename=sshd.client_key)
    assert sshd.known_hosts.read_text() == before


# --- aarch64 parity: the same artifacts on the emulated Pi and on this host ---------------------

def _port_answers(port: int) -> bool:
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@needs_pi
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_emulate_leaves_no_server_behind(pi_root, sig):
    """`python -m devices.rpi emulate` stopped by SIGTERM cleans up like Ctrl-C (sshd stopped, keys
    deleted); killed outright, its sshd still dies with it (audit: sshd outlived SIGTERM)."""
    import re
    import signal
    import time
    proc = subprocess.Popen([sys.executable, "-m", "devices.rpi", "emulate"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        banner = ""
        while "Ctrl-C" not in banner:
            line = proc.stdout.readline()
            assert line, f"emulate exited before serving: {banner!r}"
            banner += line
        port = int(re.search(r"ssh://\S+:(\d+)", banner).group(1))
        folder = os.path.dirname(re.search(r"UserKnownHostsFile=(\S+)", banner).group(1))
        assert _port_answers(port) and os.path.isdir(folder)
        proc.send_signal(getattr(signal, sig))
        rc = proc.wait(30)
        deadline = time.monotonic() + 10
        while _port_answers(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _port_answers(port), f"sshd still listens on {port} after {sig}"
        if sig == "SIGTERM":
            assert rc == 0 and not os.path.exists(folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)  # nothing can clean up after SIGKILL but the kernel's death signal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@needs_pi
def test_pi_parity_stages_checked_files_only(fixture_artifacts, pi_root, tmp_path):
    """Security re-audit: staging for the emulated Pi copied entry and golden files by path, so a
    symlink in the folder copied a host file into the Pi. Staged files now come through the checks."""
    from devices.rpi.parity import PiScores
    folder = tmp_path / "art"
    shutil.copytree(fixture_artifacts("gru"), folder)
    man = json.loads((folder / "manifest.json").read_text())
    rel = next(a["file"] for a in man["artifacts"] if a["name"] == "onnx-float32")
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((folder / rel).read_bytes())  # the same bytes: only the location is wrong
    (folder / rel).unlink()
    (folder / rel).symlink_to(outside)
    scores = PiScores(folder, pi=pi_root)
    try:
        with pytest.raises(UserError, match="leads outside"):
            scores._stage()
        assert not (scores.pi.host_path("/home/pi") / "artifacts" / rel).exists()
    finally:
        scores.close()


@needs_pi
def test_aarch64_parity(fixture_artifacts, arch, pi_root):
    """Every ONNX Runtime / LiteRT / C artifact on the emulated Pi 4 vs this x86 host, same inputs."""
    from devices.rpi.parity import aarch64_parity
    folder = fixture_artifacts(arch)
    man = json.loads((folder / "manifest.json").read_text())
    expected = {a["name"] for a in man["artifacts"]
                if a.get("status", "ok") == "ok" and a.get("runtime") in ("onnxruntime", "litert", "c")}
    rows = aarch64_parity(folder, pi=pi_root)
    assert {r["artifact"] for r in rows} == expected and {"onnxruntime", "litert", "c"} <= {r["runtime"] for r in rows}
    for r in rows:
        assert r["error"] is None, r
        if r["runtime"] == "c" and "lsb" in r:  # our int8 C: the same integers on NEON as on SSE2
            assert r["lsb"] == 0 and r["max_abs_diff"] == 0, r
        if "lsb" in r:  # integer outputs: within 1 LSB of the output scale
            assert r["lsb"] <= 1, r
        else:  # float outputs: within the float32 tolerance
            assert r["max_abs_diff"] <= 1e-4, r
        assert r["passed"], r


def test_aarch64_parity_reports_the_c_it_cannot_build_as_not_passed(fixture_artifacts, monkeypatch):
    """Without the aarch64 cross compiler the C entries are rows that did not pass, never left out."""
    import shutil as sh
    from devices.rpi import cross
    from devices.rpi.parity import aarch64_parity
    real = sh.which
    monkeypatch.setattr(cross.shutil, "which", lambda name: None if name == cross.PI4.cc else real(name))
    rows = aarch64_parity(fixture_artifacts("gru"), names=["c-int8", "c-int8-step"])
    assert [r["artifact"] for r in rows] == ["c-int8", "c-int8-step"]
    assert all(not r["passed"] and r["error"].startswith("not run: ") and "gcc-aarch64-linux-gnu" in r["error"]
               for r in rows), rows


def test_aarch64_parity_judges_an_int8_graph_with_float_outputs_in_lsbs():
    """`python -m devices.rpi parity` read only outputs[0]: for tflite-int8-step that is a float32 state
    tensor, so an int8 step graph (scores dequantized from int8) was judged by the float32 tolerance
    instead of the 1-LSB rule; the parity suite read the `scores` output and its `dequantized_from`."""
    from devices.rpi.parity import judge_pair
    scale = 0.0699
    entry = {"name": "tflite-int8-step", "runtime": "litert", "precision": "int8",
             "outputs": [{"name": "state_out_1", "dtype": "float32", "quant": None},
                         {"name": "scores", "dtype": "float32", "quant": None,
                          "dequantized_from": {"dtype": "int8", "scale": scale, "zero_point": 3}}]}
    host = np.ones((2, 100, 7), np.float32)
    one, two = host.copy(), host.copy()
    one[0, 50, 3] += scale
    two[0, 50, 3] += 2 * scale
    assert judge_pair(entry, one, host)["passed"] and judge_pair(entry, one, host)["lsb"] == 1
    assert not judge_pair(entry, two, host)["passed"]  # (under the float32 rule both failed at 1e-4 x peak)


def test_bundle_refuses_a_tflite_micro_entry_and_names_the_one_the_pi_runs():
    """`bundle --artifact tflm-int8` shipped the entry with runtime tflm (BUNDLE.json said litert): the
    Pi's check skipped it and bench failed after the upload and install, then switched back."""
    from types import SimpleNamespace

    from devices.rpi.bundle import PI_RUNTIMES, select_entries
    arts = [{"name": "tflite-int8", "file": "model_int8.tflite", "format": "tflite", "runtime": "litert", "status": "ok"},
            {"name": "tflm-int8", "file": "model_int8.tflite", "format": "tflite", "runtime": "tflm", "status": "ok"}]
    man = SimpleNamespace(artifacts=arts, by_name=lambda n: next(a for a in arts if a["name"] == n))
    with pytest.raises(UserError, match="'tflm-int8' .* has no runtime on the Pi: its file runs on the Pi as tflite-int8"):
        select_entries(man, ["tflm-int8"], tuple(PI_RUNTIMES))
    assert select_entries(man, ["tflite-int8"], tuple(PI_RUNTIMES)) == [(arts[0], "litert")]
    assert select_entries(man, None, tuple(PI_RUNTIMES)) == [(arts[0], "litert")]  # the default never took it


def test_pi_scores_leave_no_work_folder_when_no_pi_can_be_had(fixture_artifacts, tmp_path, monkeypatch):
    """PiScores made its work folder before asking for the emulated Pi: a failure there left it behind."""
    from devices.rpi import parity as P
    monkeypatch.setenv("RNN_EDGE_CACHE", str(tmp_path / "cache"))

    def no_pi(progress=False):
        raise UserError("mmdebstrap failed (simulated)")
    monkeypatch.setattr(P, "emulated_pi", no_pi)
    with pytest.raises(UserError, match="simulated"):
        P.PiScores(fixture_artifacts("gru"))
    assert list((tmp_path / "cache").rglob("pi-*")) == []
