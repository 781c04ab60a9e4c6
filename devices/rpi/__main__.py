"""``python -m devices.rpi {bundle,deploy,root,emulate,parity} ...``: the Raspberry Pi commands.

Exit status: 0 success, 1 a parity cell failed, 2 a usage or input error (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from runtime.errors import UserError


def _bundle(args) -> int:
    from devices.rpi.bundle import make_bundle
    b = make_bundle(args.artifacts, out_dir=args.out, name=args.name, artifacts=args.artifact,
                    runtimes=tuple(args.runtimes.split(",")), wheels=args.wheels)
    n = sum(len(v) for v in b.info["artifacts"].values())
    print(f"bundle {b.folder} ({n} artifacts; {', '.join(b.info['requirements'])})")
    print(f"tarball {b.tarball} sha256 {b.sha256}")
    return 0


def _deploy(args) -> int:
    from devices.rpi.deploy import deploy
    started = time.monotonic()

    def show(step: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {step}", file=sys.stderr, flush=True)

    r = deploy(args.bundle, args.host, port=args.port, known_hosts=args.known_hosts, key_filename=args.key,
               remote_dir=args.dir, results_dir=args.results, on_step=show, bench_repeats=args.bench_repeats)
    print(f"active release {r.release} in {r.remote_dir} (previous: {r.previous or 'none'})")
    for folder, res in r.results.items():
        for v in res["check"]:
            print(f"  check {folder}/{v.get('artifact')}: {v.get('verdict')} {v.get('why') or ''}".rstrip())
        for name, b in res["bench"].items():
            seq = b.get("sequence", {}).get("median_ms")
            step = b.get("step", {}).get("median_us")
            print(f"  bench {folder}/{name}: sequence {seq if seq is None else f'{seq:.2f} ms'}, "
                  f"step {step if step is None else f'{step:.0f} us'} (median)")
    print(f"results: {r.results_dir}")
    return 0


def _root(args) -> int:
    from devices.rpi.emulated_root import emulated_pi
    print(emulated_pi(progress=True).home)
    return 0


def _stop_on_signal(signum, frame) -> None:
    raise KeyboardInterrupt  # so that the ``with`` below stops sshd and deletes its files


def _emulate(args) -> int:
    import signal
    from devices.rpi.emulated_root import emulated_pi
    from devices.rpi.loopback_sshd import LoopbackSshd
    # SIGTERM (kill, systemd, a CI runner) and SIGHUP (the terminal closed) end it like Ctrl-C
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    with LoopbackSshd(emulated_pi(progress=True)) as sshd:
        try:  # (the banner inside: a signal that comes as soon as it is read is a stop, not an error)
            print(f"emulated Raspberry Pi 4 on ssh://{sshd.host}:{sshd.port}\n"
                  f"  ssh -p {sshd.port} -i {sshd.client_key} -o UserKnownHostsFile={sshd.known_hosts} {sshd.host}\n"
                  f"  invoke deploy --host {sshd.host} --port {sshd.port} --known-hosts {sshd.known_hosts} "
                  f"--key {sshd.client_key}\nCtrl-C (or SIGTERM, SIGHUP) stops it and deletes its files.", flush=True)
            while sshd.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def _parity(args) -> int:
    from devices.rpi.parity import aarch64_parity
    failed = 0
    for folder in args.artifacts:
        for r in aarch64_parity(folder, names=args.artifact, progress=True):
            failed += not r["passed"]
            if args.json:
                print(json.dumps({"folder": folder, **r}))
                continue
            detail = r["error"] or (f"max|diff| {r['max_abs_diff']:.2e}" + (f" = {r['lsb']} LSB" if "lsb" in r else "")
                                    + f"  ({r['rule']})")
            print(f"{'ok' if r['passed'] else 'FAIL':4}  {r['artifact']:28} {r['precision']:14} {detail}")
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m devices.rpi", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bundle", help="build a Pi bundle (folder + tarball) from artifact folders")
    b.add_argument("artifacts", nargs="+", help="artifact folders written by `invoke export`")
    b.add_argument("--out", default="dist/rpi", help="output folder (default dist/rpi)")
    b.add_argument("--name", default="rnn-edge-pi", help="bundle name (default rnn-edge-pi)")
    b.add_argument("--artifact", action="append", help="ship only this manifest entry (repeatable)")
    b.add_argument("--runtimes", default="onnxruntime,litert,c",
                   help="Pi runtimes (default onnxruntime,litert,c; c = the generated C, cross-compiled here for aarch64)")
    b.add_argument("--wheels", action="store_true", help="include the aarch64 wheels, for a Pi without network")
    b.set_defaults(fn=_bundle)
    d = sub.add_parser("deploy", help="deploy a bundle over SSH (strict host keys), run check and bench")
    d.add_argument("bundle", nargs="?", default="dist/rpi/rnn-edge-pi", help="bundle folder or tarball")
    d.add_argument("--host", required=True,
                   help="user@host[:port] of the Pi; IPv6: user@[addr]:port, user@[addr] or user@addr")
    d.add_argument("--port", type=int, default=None, help="SSH port, 1 to 65535 (default 22)")
    d.add_argument("--known-hosts", default=None, help="known_hosts file (default ~/.ssh/known_hosts)")
    d.add_argument("--key", default=None,
                   help="private key file without a passphrase (default: ssh agent / ~/.ssh keys)")
    d.add_argument("--dir", default="rnn-edge",
                   help="a folder of its own on the Pi, relative to home or absolute (default rnn-edge); not ~ or /, "
                        "no '..'; one that holds files deploy did not make is refused")
    d.add_argument("--results", default=None, help="local results folder (default dist/rpi/results/HOST)")
    d.add_argument("--bench-repeats", type=int, default=50, help="timed runs per artifact (default 50)")
    d.set_defaults(fn=_deploy)
    r = sub.add_parser("root", help="build (or find) the cached emulated Pi root; print its folder")
    r.set_defaults(fn=_root)
    e = sub.add_parser("emulate", help="run a loopback sshd into the emulated Pi until Ctrl-C")
    e.set_defaults(fn=_emulate)
    q = sub.add_parser("parity", help="ONNX Runtime / LiteRT on the emulated Pi (aarch64) vs this host")
    q.add_argument("artifacts", nargs="+", help="artifact folders")
    q.add_argument("--artifact", action="append", help="only this manifest entry (repeatable)")
    q.add_argument("--json", action="store_true", help="one JSON object per artifact")
    q.set_defaults(fn=_parity)
    return p


def main(argv=None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)  # 130: a deploy interrupted after its switch (deploy.DeployInterrupted)
    except KeyboardInterrupt:
        print("error: interrupted; the Pi keeps the release that was active before", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
