"""``python -m parity ARTIFACT_DIR [ARTIFACT_DIR ...] [--out DIR]``: run, judge and report the matrix.

Exit status: 0 when every cell is within tolerance (skipped cells are listed, never passed),
1 when a cell fails (the failing cells are named on stderr), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m parity", description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", metavar="ARTIFACT_DIR", help="artifact folder(s) with manifest.json")
    p.add_argument("--out", help="write parity.json, parity.md and plots here")
    p.add_argument("--golden-only", action="store_true", help="skip the test split: golden.npz rows only (fast)")
    p.add_argument("--max-test", type=int, default=None, help="use at most N test-split sequences")
    p.add_argument("--sample-rows", type=int, default=None, metavar="N",
                   help="test rows added to the golden rows for streaming and emulated-device cells (default 120)")
    p.add_argument("--only", action="append", metavar="PATTERN", help="only cells whose id matches (fnmatch), repeatable")
    p.add_argument("--skip-devices", action="store_true", help="leave out the emulated devices (Cortex-M, Raspberry Pi)")
    p.add_argument("--list", action="store_true", help="list the cells and exit")
    p.add_argument("--no-plots", action="store_true", help="JSON + Markdown only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    from runtime.errors import UserError
    args = build_parser().parse_args(argv)
    try:
        import torch
        torch.set_num_threads(1)
        from parity.matrix import run_matrix
        from parity.providers import DEVICE_PROVIDERS, REGISTRY
        from parity.report import summary, terminal, write_reports
        providers = tuple(p for p in REGISTRY if not (args.skip_devices and p in DEVICE_PROVIDERS))
        if args.list:
            from parity.providers import list_cells
            for folder in args.folders:
                for c in list_cells(folder, providers):
                    print(f"{c.id:40s} {'SKIP: ' + c.skip if c.skip else c.what}")
            return 0
        from parity.inputs import SAMPLE_TEST_ROWS
        for flag, value in (("--sample-rows", args.sample_rows), ("--max-test", args.max_test)):
            if value is not None and value < 0:
                raise UserError(f"{flag} {value}: pass 0 or more (a count of test-split rows)")
        sample = SAMPLE_TEST_ROWS if args.sample_rows is None else args.sample_rows
        if args.out:  # before the run: a report that cannot be written must not cost the run, or hide its verdict
            from runtime.atomic import check_writable
            check_writable(Path(args.out) / "parity.json", "--out")
        matrices = [run_matrix(f, test_split=not args.golden_only, max_test=args.max_test, only=args.only,
                               providers=providers, progress=not args.quiet, sample_test_rows=sample)
                    for f in args.folders]
        print(terminal(matrices))
        if args.out:
            command = "python -m parity " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
            paths = write_reports(matrices, args.out, command=command, plots=not args.no_plots)
            print(f"reports: {', '.join(str(p) for p in paths)}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = [r for m in matrices for r in m.failed]
    if failed:
        print(summary(matrices).splitlines()[-1], file=sys.stderr)
        for r in failed:
            print(f"  {r.id}: {'; '.join(r.failures)}", file=sys.stderr)
        return 1
    return 0


def _export_default(task: str, arch: str, folder: Path, run: Path) -> int:
    """``invoke export --task TASK --arch ARCH`` with the run folder ``run`` (trained first when it has
    no checkpoint), so that both stay in the repository ``invoke_parity`` was given.

    Imported from export.cli, not export.__main__ (whose import would run the export CLI on this
    process's own arguments)."""
    from export.cli import main as export_main
    if not (run / "model.safetensors").is_file():
        from training.train import main as train_main
        print(f"parity: no checkpoint in {run}: training the default {task}-{arch} model first")
        rc = train_main(["--task", task, "--arch", arch, "--out", str(run)])
        if rc:
            return rc
    return export_main(["--task", task, "--arch", arch, "--checkpoint", str(run), "--out", str(folder)])


def invoke_parity(arch: str = "gru,lstm", artifacts: str | None = None, task: str = "watch",
                  out: str | None = "docs/parity", extra: list[str] | None = None, repo: str = ".") -> int:
    """What ``invoke parity`` runs: export the default model first when its folder is missing, then the suite.

    ``arch``: comma-separated architectures (folders ``REPO/artifacts/<task>-<arch>``, exported from
    ``REPO/runs/<task>-<arch>``; ``repo``: the repository, which invoke passes); ``artifacts``:
    comma-separated artifact folders instead (``arch`` and ``task`` are then ignored).
    """
    from runtime.errors import UserError
    folders = [f for f in (artifacts or "").split(",") if f]
    if not folders:
        archs = [a for a in arch.split(",") if a]
        unknown = [a for a in archs if a not in ("gru", "lstm")]
        if unknown or not archs:
            raise UserError(f"unknown architecture(s) {', '.join(unknown) or '(none given)'}: "
                            f"pass --arch gru, lstm or gru,lstm (or --artifacts FOLDER,...)")
        from training.data import TASKS
        if task not in TASKS and not Path(task).exists():  # before an export makes its run folder
            raise UserError(f"unknown task {task!r}: use one of {', '.join(TASKS)}, or the path of a data folder "
                            f"or .npz file (or --artifacts FOLDER,...)")
        for a in archs:
            name = f"{Path(task).name}-{a}"
            folder, run = Path(repo) / "artifacts" / name, Path(repo) / "runs" / name
            if not (folder / "manifest.json").is_file():
                print(f"parity: {folder} has no manifest.json: exporting the default {task}-{a} model first")
                rc = _export_default(task, a, folder, run)
                if rc:
                    return rc
            folders.append(str(folder))
    argv = folders + (["--out", out] if out else []) + list(extra or [])
    return main(argv)


if __name__ == "__main__":
    sys.exit(main())
