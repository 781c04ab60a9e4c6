"""The user's menu: `invoke --list`. Each task is a thin wrapper over a module you can also import.

Errors a user can fix are printed as one line and exit non-zero; see runtime/errors.py.
"""

from __future__ import annotations

import functools
import os
import sys

from invoke import Exit, task

os.environ.setdefault("OMP_NUM_THREADS", "1")


def user_errors(fn):
    """Turn a UserError into one line on stderr and exit code 2 (no traceback)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from runtime.errors import UserError
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            raise Exit(f"error: {e}", code=2) from None
    return wrapper


@task(help={
    "task": "watch (default) | kws | fixture | PATH to a data folder or .npz",
    "arch": "lstm | gru (default from the config: gru)",
    "config": "TOML config file (default configs/<task>.toml)",
    "set_": "override a config option, KEY=VALUE (repeatable), e.g. --set hidden=64,64",
    "out": "run folder (default runs/<task>-<arch>)",
    "device": "auto | cpu | cuda",
    "epochs": "maximum epochs",
    "fresh": "ignore an existing training state instead of resuming it",
    "procs": "train with N processes through torchrun + DDP (gloo on CPU, NCCL on GPUs)",
}, iterable=["set_"])
@user_errors
def train(c, task="watch", arch=None, config=None, set_=None, out=None, device=None, epochs=None,
          fresh=False, procs=1):
    """Train an LSTM/GRU on a task; writes model.safetensors, metrics.json and plots to the run folder."""
    argv = ["--task", task]
    for flag, value in (("--arch", arch), ("--config", config), ("--out", out), ("--device", device),
                        ("--epochs", epochs)):
        if value is not None:
            argv += [flag, str(value)]
    for item in set_ or []:
        argv += ["--set", item]
    if fresh:
        argv.append("--no-resume")
    if int(procs) > 1:
        c.run(f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node {int(procs)} "
              f"-m training.train " + " ".join(argv), pty=False)
        return
    from training.train import main
    rc = main(argv)
    if rc:
        raise Exit(code=rc)


@task(help={
    "task": "task whose default run to export (watch)",
    "arch": "lstm | gru (default gru)",
    "checkpoint": "model.safetensors or run folder (default runs/<task>-<arch>; trained first if missing)",
    "out": "artifact folder (default artifacts/<task>-<arch>)",
    "kinds": "comma-separated families to export: onnx,tflite,c (default all)",
})
@user_errors
def export(c, task="watch", arch="gru", checkpoint=None, out=None, kinds=None):
    """Export a checkpoint to every artifact (ONNX, TFLite, C), verify each and write manifest.json."""
    from export.__main__ import main
    argv = ["--task", task, "--arch", arch]
    for flag, value in (("--checkpoint", checkpoint), ("--out", out), ("--kinds", kinds)):
        if value is not None:
            argv += [flag, str(value)]
    rc = main(argv)
    if rc:
        raise Exit(code=rc)


@task(help={"slow": "also run the heavy tier (full-size training, long fuzzing)",
            "k": "only tests matching this pytest -k expression"})
def test(c, slow=False, k=None):
    """Run the test suite (the same command CI runs)."""
    cmd = f"{sys.executable} -m pytest"
    if slow:
        cmd += " -m 'slow or not slow'"
    if k:
        cmd += f" -k '{k}'"
    c.run(cmd, pty=False)


@task(help={"tasks": "comma-separated tasks (watch,kws)", "archs": "comma-separated (gru,lstm)",
            "out": "JSON report path"})
@user_errors
def train_bench(c, tasks="watch,kws", archs="gru,lstm", out="docs/benchmarks/training.json"):
    """Training benchmark: sequences/s and time to reach the target accuracy, per task and arch."""
    from training.bench import main
    rc = main(["--tasks", tasks, "--archs", archs, "--out", out])
    if rc:
        raise Exit(code=rc)


@task(help={"target": "cortex-m4 | cortex-m7 | cortex-m3 (see devices/targets.py)",
            "artifacts": "artifact folder with a c-<precision> entry (default artifacts/watch-gru)",
            "checkpoint": "or a run folder: generate and calibrate the C from it",
            "precision": "int8 | float32", "opt": "compiler optimization flag", "json": "print JSON"})
@user_errors
def firmware(c, target="cortex-m4", artifacts=None, checkpoint=None, precision="int8", opt="-O2", json=False):
    """Build the C model for a Cortex-M target, run it under QEMU, print flash/RAM/instructions per MAC."""
    from devices.cortex_m.report import firmware as run
    if artifacts is None and checkpoint is None:
        artifacts = "artifacts/watch-gru"
    print(run(target=target, artifacts=artifacts, checkpoint=checkpoint, precision=precision, opt=opt, as_json=json))


@task(help={"checkpoint": "an LSTM run folder (TFLite Micro has no GRU kernel)"})
@user_errors
def tflm_compare(c, checkpoint="runs/watch-lstm"):
    """Our int8 C next to TFLite Micro's int8 fused LSTM: arena vs RAM, accuracy, agreement."""
    import json as _json
    from devices.cortex_m.tflm_compare import compare_tflm
    print(_json.dumps(compare_tflm(checkpoint), indent=2))


def _runtime_cli(*argv) -> None:
    from runtime.__main__ import main
    rc = main([str(a) for a in argv])
    if rc:
        raise Exit(code=rc)


@task(help={"artifacts": "artifact folder (default artifacts/watch-gru)"})
@user_errors
def check(c, artifacts="artifacts/watch-gru"):
    """Verify every artifact's sha256 and compare it with the golden samples (exit 1 on failure)."""
    _runtime_cli("check", artifacts)


@task(help={"artifacts": "artifact folder (default artifacts/watch-gru)", "backend": "only this backend",
            "artifact": "only this artifact (manifest name)"})
@user_errors
def latency(c, artifacts="artifacts/watch-gru", backend=None, artifact=None):
    """Latency per sequence and per streaming step (median, p90 after warm-up, one thread)."""
    argv = ["bench", artifacts]
    if backend:
        argv += ["--backend", backend]
    if artifact:
        argv += ["--artifact", artifact]
    _runtime_cli(*argv)


@task(help={"model": "kws artifact folder (default artifacts/kws-gru)", "wav": "16 kHz mono WAV file"})
@user_errors
def listen(c, wav, model="artifacts/kws-gru"):
    """Keyword spotting on a WAV: streaming log-mel features through the streaming model."""
    _runtime_cli("listen", "--model", model, "--wav", wav)
