"""Command line for export (what `invoke export` calls).

    python -m export [--task watch] [--arch gru] [--checkpoint PATH] [--out DIR]
                     [--kinds onnx,tflite,c] [--unrolled] [--no-progress]
    python -m export --keras MODEL.keras|.h5 [--seq-len N] [--out DIR] [--kinds ...]

Without --checkpoint it uses runs/<task>-<arch>/model.safetensors, training the default
configuration first when there is none. Writes artifacts/<task>-<arch>/ (or --out) atomically and
prints a summary table. With --keras the
Keras model is imported first (training/keras_import.py -> runs/keras-<name>/model.safetensors),
then exported with a seeded synthetic calibration/verification set (default out
artifacts/keras-<name>). Exit status: 0 all artifacts ok (out-of-tolerance ones are listed as
warnings), 1 some artifact failed, 2 bad input (one `error:` line, nothing exported is lost).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.errors import UserError


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default=None, help="watch | kws | fixture | PATH (default: the checkpoint's, else watch)")
    p.add_argument("--arch", default=None, help="lstm | gru (default: the checkpoint's, else gru)")
    p.add_argument("--checkpoint", default=None, help="model.safetensors or its run folder")
    p.add_argument("--out", default=None, help="artifact folder (default artifacts/<task>-<arch>)")
    p.add_argument("--kinds", default=None, help="comma list of onnx, tflite, c (default all)")
    p.add_argument("--unrolled", action="store_true", help="also the unrolled ONNX pair (minutes to quantize)")
    p.add_argument("--keras", default=None, metavar="MODEL", help="import a .keras/.h5 LSTM/GRU model and export it")
    p.add_argument("--seq-len", type=int, default=None, help="--keras: window length when the model leaves it open")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def resolve_checkpoint(task: str, arch: str, progress: bool) -> Path:
    """runs/<task>-<arch>/model.safetensors, trained with the default config when missing."""
    from training.config import load_config
    cfg = load_config(task, arch=arch)
    path = cfg.run_dir() / "model.safetensors"
    if not path.is_file():
        print(f"no checkpoint at {path}: training the default {task}-{arch} model first", file=sys.stderr)
        from training.trainer import train
        train(cfg, progress=progress)
    return path


def main(argv=None) -> int:
    args = parse(argv)
    try:
        from export.pipeline import ARCHS_SUPPORTED, export_artifacts, inspect_checkpoint
        if args.arch is not None and args.arch not in ARCHS_SUPPORTED:
            raise UserError(f"unsupported architecture {args.arch!r}: export supports {', '.join(ARCHS_SUPPORTED)}")
        if args.seq_len is not None and (not args.keras or args.seq_len < 1):
            raise UserError(f"--seq-len {args.seq_len}: it sets a Keras model's open window length, so pass it "
                            f"with --keras and a length of 1 or more (a checkpoint knows its own)")
        if args.keras:
            return _export_keras(args)
        if args.checkpoint:
            checkpoint = Path(args.checkpoint)
            arch = args.arch or inspect_checkpoint(checkpoint)["arch"]
        else:
            arch = args.arch or "gru"
            checkpoint = resolve_checkpoint(args.task or "watch", arch, not args.no_progress)
        spec = inspect_checkpoint(checkpoint)
        if spec["arch"] != arch:
            raise UserError(f"checkpoint {checkpoint} is a {spec['arch']} model, not {arch}: "
                            f"pass --arch {spec['arch']} or the {arch} checkpoint")
        out = Path(args.out) if args.out else None
        if out is None:
            from training.checkpoint import load_model
            _, meta = load_model(checkpoint)
            name = Path(str(meta.get("task") or args.task or "model")).name
            out = Path("artifacts") / f"{name}-{arch}"
        manifest = export_artifacts(checkpoint, out, task=args.task, kinds=args.kinds, arch=arch,
                                    progress=not args.no_progress, unrolled=args.unrolled)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _report(manifest, out)


def _export_keras(args) -> int:
    """--keras: import, then export on the synthetic data (UserError propagates to main)."""
    from export.pipeline import export_artifacts
    from training.checkpoint import load_model
    from training.keras_import import import_keras, synthetic_data
    if args.checkpoint or args.task:
        raise UserError("--keras cannot be combined with --checkpoint or --task: the Keras model is the checkpoint")
    name = Path(args.keras).stem
    checkpoint = Path("runs") / f"keras-{name}" / "model.safetensors"
    _check_keras_run(checkpoint, Path(args.keras))
    meta = import_keras(args.keras, checkpoint, seq_len=args.seq_len)
    k = meta["keras"]["check"]
    print(f"imported {args.keras} ({meta['keras']['framework']}) -> {checkpoint}: logits max |PyTorch - Keras| "
          f"{k['logits_max_abs_vs_keras']:.2e}, argmax agreement {k['argmax_agreement_vs_keras']:.4f} on {k['windows']} windows")
    model, meta = load_model(checkpoint)
    out = Path(args.out) if args.out else Path("artifacts") / f"keras-{name}"
    manifest = export_artifacts(checkpoint, out, kinds=args.kinds, arch=args.arch, progress=not args.no_progress,
                                unrolled=args.unrolled, data=synthetic_data(model, meta))
    return _report(manifest, out)


def _check_keras_run(checkpoint: Path, keras_file: Path) -> None:
    """``runs/keras-<stem>`` may hold the import of another file with the same stem (a/lstm.keras, then
    b/lstm.h5): refuse to replace it, since an export made from it names that checkpoint."""
    if not checkpoint.is_file() or not keras_file.is_file():
        return
    from training.checkpoint import file_sha256, load_model
    try:
        before = (load_model(checkpoint)[1].get("keras") or {})
    except UserError:
        return  # a damaged checkpoint there is replaced by the new import
    if before.get("sha256") not in (None, file_sha256(keras_file)):
        raise UserError(f"{checkpoint.parent} holds the import of another Keras file ({before.get('file')}): "
                        f"rename {keras_file.name} or remove that folder")


def _report(manifest: dict, out: Path) -> int:
    from export.summary import problems, table
    print(table(manifest))
    print(f"-> {out}/manifest.json")
    failed = False
    for r, line in zip([r for r in manifest["artifacts"] if r.get("status") != "ok"], problems(manifest)):
        if r.get("status") == "failed":
            failed = True
            print(f"error: {line}", file=sys.stderr)
        else:
            print(f"warning: {line}", file=sys.stderr)
    return 1 if failed else 0
