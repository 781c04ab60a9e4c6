"""Device apps: ``python -m runtime {predict,bench,check,sense,listen} ...`` (``-h`` on each for options).

Exit status: 0 success, 1 a check failed, 2 a usage or input error (printed as one ``error:`` line).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from runtime.errors import UserError

APPS = {
    "predict": "classify sequences from a .npz or .csv file",
    "bench": "latency per sequence and per streaming step (median, p90)",
    "check": "verify sha256 and compare every artifact with the golden samples",
    "sense": "stream IMU CSV rows through the streaming model, print detections",
    "listen": "stream audio (WAV or microphone) through log-mel + the model, print keywords",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="app", required=True, metavar="{" + ",".join(APPS) + "}")
    for name, help_ in APPS.items():
        module = importlib.import_module(f"runtime.apps.{name}")
        sp = sub.add_parser(name, help=help_, description=module.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sp)
        sp.set_defaults(module=module)
    return p


def main(argv=None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = parser().parse_args(argv)
    try:
        return int(args.module.run(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
