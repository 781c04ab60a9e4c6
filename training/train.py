"""Command-line entry point for training (what `invoke train` and torchrun call).

    python -m training.train --task watch --arch gru [--config F] [--set key=value ...]
    python -m training.train --task fixture --device cpu --procs 2    (torchrun + DDP, data checked first)
    torchrun --nproc_per_node 2 -m training.train --task fixture --device cpu
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from runtime.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one ``error: ...`` line and exit code 2, not the usage block."""

    def error(self, message):
        self.exit(2, f"error: {message}: see {self.prog} --help\n")


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (e.g. 40)") from None


def parse(argv=None):
    p = Parser(prog="python -m training.train", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="watch", help="watch | kws | fixture | watch-forecast | fixture-forecast | watch-frames | fixture-frames | PATH (folder or .npz)")
    p.add_argument("--arch", choices=["lstm", "gru"], default=None)
    p.add_argument("--config", default=None, help="TOML config (default configs/<task>.toml)")
    p.add_argument("--out", default=None, help="run folder (default runs/<task>-<arch>)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda")
    p.add_argument("--epochs", type=whole_number, default=None)
    p.add_argument("--procs", type=whole_number, default=1,
                   help="train with N processes through torchrun + DDP (gloo on CPU, NCCL on GPUs)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a training state exists")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config option")
    return p.parse_args(argv)


def parse_sets(items: list[str]) -> dict:
    """``--set KEY=VALUE`` items as config overrides."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v.strip()
    return overrides


def launch(cfg, procs: int, argv: list[str], resume: bool = True) -> int:
    """Train per ``argv`` with ``procs`` processes through torchrun, after the checks that the processes
    would make (device, run folder, a state to resume, the data, the model's shape) are made here: bad
    input is then one ``error:`` line, not one per process and torchrun's traceback."""
    from training.data import load_task
    from training.models import ModelSpec
    from training.trainer import check_resumed_spec, check_run_folder, pick_device
    if procs < 1:
        raise UserError(f"--procs {procs} is too small: pass 1 or more")
    pick_device(cfg.device)
    st = check_run_folder(cfg, resume)
    data = load_task(cfg.task, seed=cfg.seed, **cfg.data)  # (each process loads it again, from the cache where there is one)
    spec = ModelSpec(cfg.arch, data.input_size, tuple(cfg.hidden), data.num_classes, head=data.head)
    check_resumed_spec(st, spec, cfg.run_dir() / "train_state.pt")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run
    os.environ.setdefault("OMP_NUM_THREADS", str(cfg.threads))  # each process's threads, as in one-process runs
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # a failed worker is reported below
    try:  # torchrun, in this process so that a failed worker is reported here and not as torchrun's traceback
        run(get_args_parser().parse_args(["--standalone", "--nproc_per_node", str(procs),
                                          "-m", "training.train", *argv, "--procs", "1"]))
    except ChildFailedError as e:
        codes = sorted({f.exitcode for f in e.failures.values()})
        # a UserError: rank 0 printed its one line and exited 2; the others exited 2 too, or were
        # stopped by torchrun (SIGTERM) once one had failed
        if 2 in codes and set(codes) <= {2, -signal.SIGTERM}:
            return 2
        print(f"error: {len(e.failures)} of the {procs} training processes failed (exit codes "
              f"{', '.join(map(str, codes))}); their output is above", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    try:
        from training.config import load_config
        from training.trainer import train
        sets = parse_sets(args.set)
        if "task" in sets:  # (load_config takes the task apart from the overrides)
            raise UserError(f"--set task={sets['task']} cannot choose the task: pass it as --task {sets['task'] or 'NAME'}")
        overrides = {"arch": args.arch, "out": args.out, "device": args.device, "epochs": args.epochs, **sets}
        cfg = load_config(args.task, args.config, **overrides)
        if args.procs != 1:
            return launch(cfg, args.procs, sys.argv[1:] if argv is None else list(argv), resume=not args.no_resume)
        m = train(cfg, resume=not args.no_resume, progress=not args.no_progress)
    except UserError as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun: one line from rank 0, not one per process
            print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # (Ctrl-C) every finished epoch is saved: the same command resumes the run
        if os.environ.get("RANK", "0") == "0":
            print("interrupted: the run folder keeps the last finished epoch; the same command resumes it", file=sys.stderr)
        return 130
    if m is not None and m.get("world_size", 1) >= 1:
        if os.environ.get("RANK", "0") == "0":
            note = " (synthetic speech)" if m.get("synthetic") and m["task"] == "kws" else ""
            if m.get("head") == "forecast":
                print(f"{m['task']}-{m['arch']}: test MSE {m['test_mse']:.4f} MAE {m['test_mae']:.4f} (normalized units); "
                      f"naive last value MSE {m['test_naive_mse']:.4f} MAE {m['test_naive_mae']:.4f}; "
                      f"ratio MSE {m['test_mse_ratio']:.3f} MAE {m['test_mae_ratio']:.3f} after {m['epochs_run']} epochs "
                      f"in {m['train_seconds']:.0f} s ({m['stop_reason']}) -> {cfg.run_dir()}")
                return 0
            if m.get("head") == "frames":
                settled = f", settled {m['test_settled_acc']:.4f}" if m["test_settled_acc"] is not None else ""  # (settle_s = 0: none)
                print(f"{m['task']}-{m['arch']}: test frame accuracy {m['test_frame_acc']:.4f} (from frame {m['ignore_frames']}), "
                      f"all frames {m['test_frame_acc_all']:.4f}{settled} after {m['epochs_run']} "
                      f"epochs in {m['train_seconds']:.0f} s ({m['stop_reason']}) -> {cfg.run_dir()}")
                return 0
            print(f"{m['task']}-{m['arch']}: test accuracy {m['test_acc']:.4f}{note} after {m['epochs_run']} epochs "
                  f"in {m['train_seconds']:.0f} s ({m['stop_reason']}) -> {cfg.run_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
