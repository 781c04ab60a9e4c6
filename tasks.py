"""The user's menu: `invoke --list`. Each task is a thin wrapper over a module you can also import.

Errors a user can fix are printed as one line and exit non-zero; see runtime/errors.py.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import sys
from pathlib import Path

from invoke import Exit, task

os.environ.setdefault("OMP_NUM_THREADS", "1")

# Default paths (artifacts/, runs/, docs/, tests/) are the repository's, whatever the current folder
# (a subfolder, or `invoke -r REPO` from elsewhere); paths the user types resolve against the current folder.
ROOT = Path(__file__).resolve().parent


def _repo(path: str) -> str:
    """A default path inside the repository: as written when the current folder is the repository (reports
    record the command), else absolute."""
    return path if Path.cwd() == ROOT else str(ROOT / path)


def _typed(path):
    """A path the user typed, made absolute against the current folder (None stays None), so that it
    still names the same file once `_main_in_repo` has moved to the repository."""
    if not path or os.path.isabs(path) or Path.cwd() == ROOT:  # (in the repository: as typed, as reports record it)
        return path
    return os.path.join(os.getcwd(), path)


def _main_in_repo(main, argv: list[str]) -> None:
    """Run ``main(argv)`` of a module whose defaults are relative paths (configs/, runs/, artifacts/,
    .cache/, docs/) from the repository root, so that `invoke train` in a subfolder (or `invoke -r REPO
    train` from elsewhere) resumes and writes the repository's runs instead of starting new ones where
    it stands. Paths the user typed are made absolute first (`_typed`). The paths that module prints
    are then the repository's: after a success one line says so (after an error, the error line stays
    the only one). A non-zero exit status becomes the task's."""
    if Path.cwd() == ROOT:
        rc = main(argv)
    else:
        with contextlib.chdir(ROOT):
            rc = main(argv)
        if not rc:
            print(f"(paths above are relative to the repository, {ROOT})", file=sys.stderr)
    if rc:
        raise Exit(code=rc)


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


def _required(task_name: str, **given) -> None:
    """Options a task cannot run without. They are keyword options (default None), not positional
    arguments: invoke would take `invoke TASK --help` as the value of a positional one and run the task."""
    from runtime.errors import UserError
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise UserError(f"pass {' and '.join('--' + m.replace('_', '-') for m in missing)} (see invoke --help {task_name})")


def _whole(name: str, value, minimum: int = 0) -> int:
    """A whole-number task argument (declared as a string so that invoke does not convert it with a
    traceback on bad input): one clear error instead."""
    from runtime.errors import UserError
    try:
        n = int(str(value))
    except ValueError:
        raise UserError(f"--{name} {value!r} is not a whole number: pass e.g. --{name} {max(minimum, 1)}") from None
    if n < minimum:
        raise UserError(f"--{name} {n} is too small: pass {minimum} or more")
    return n


@task(help={
    "task": "watch (default) | kws | watch-forecast | watch-frames | fixture | PATH to a data folder or .npz",
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
          fresh=False, procs="1"):
    """Train an LSTM/GRU on a task; writes model.safetensors, metrics.json and plots to the run folder."""
    from training.data.base import is_path_task
    argv = ["--task", _typed(task) if is_path_task(task) else task]
    for flag, value in (("--arch", arch), ("--config", _typed(config)), ("--out", _typed(out)),
                        ("--device", device), ("--epochs", epochs)):
        if value is not None:
            argv += [flag, str(value)]
    for item in set_ or []:
        key, _, value = item.partition("=")
        argv += ["--set", f"{key}={_typed(value.strip())}" if key.strip() == "out" and value.strip() else item]
    if fresh:
        argv.append("--no-resume")
    procs = _whole("procs", procs, minimum=1)
    if procs > 1:  # training.train checks the data here, then starts torchrun (training.train.launch)
        argv += ["--procs", str(procs)]
    from training.train import main
    _main_in_repo(main, argv)


@task(help={
    "task": "task whose default run to export (default: the checkpoint's, else watch)",
    "arch": "lstm | gru (default: the checkpoint's, else gru)",
    "checkpoint": "model.safetensors or run folder (default runs/<task>-<arch>; trained first if missing)",
    "out": "artifact folder (default artifacts/<task>-<arch>, or artifacts/keras-<name> with --keras)",
    "kinds": "comma-separated families to export: onnx,tflite,c (default all; over an export of the same checkpoint the others are kept)",
    "keras": "import a .keras/.h5 LSTM/GRU model instead of a checkpoint (docs/keras.md)",
    "seq_len": "with --keras: window length when the Keras model leaves it open",
})
@user_errors
def export(c, task=None, arch=None, checkpoint=None, out=None, kinds=None, keras=None, seq_len=None):
    """Export a checkpoint (or a Keras model) to every artifact (ONNX, TFLite, C), verify each, write manifest.json."""
    from export.cli import main
    from training.data.base import is_path_task
    argv = []
    for flag, value in (("--task", _typed(task) if task and is_path_task(task) else task), ("--arch", arch),
                        ("--checkpoint", _typed(checkpoint)), ("--out", _typed(out)), ("--kinds", kinds),
                        ("--keras", _typed(keras)), ("--seq-len", seq_len)):
        if value is not None:
            argv += [flag, str(value)]
    _main_in_repo(main, argv)


def _pytest_in_repo(c, argv: list[str]) -> None:
    """Run pytest from the repository root, where it finds its configuration and tests/, whatever the
    current folder (quoted: the root may hold spaces, and a -k expression is data, not shell)."""
    c.run(f"cd {shlex.quote(str(ROOT))} && {shlex.join(argv)}", pty=False)


@task(help={"slow": "also run the heavy tier (full-size training, long fuzzing)",
            "k": "only tests matching this pytest -k expression"})
def test(c, slow=False, k=None):
    """Run the test suite (the same command CI runs)."""
    argv = [sys.executable, "-m", "pytest"] + (["-m", "slow or not slow"] if slow else []) + (["-k", k] if k else [])
    _pytest_in_repo(c, argv)


@task(help={"slow": "also the heavy tier (bit flips in every byte, longer fuzzing)"})
def reliability(c, slow=False):
    """Reliability suite: damaged files, hostile inputs, SIGKILL during training/export, C fuzzing (docs/reliability.md)."""
    argv = [sys.executable, "-m", "pytest", "tests/test_reliability_files.py", "tests/test_reliability_inputs.py",
            "tests/test_reliability_kill.py", "tests/test_reliability_fuzz.py"] + (["-m", "slow or not slow"] if slow else [])
    _pytest_in_repo(c, argv)


@task(help={"seconds": "total libFuzzer time, shared among the models", "models": "how many random models",
            "seed": "seed of the random models", "workdir": "keep builds and corpora here"})
@user_errors
def fuzz(c, seconds="60", models="5", seed="1", workdir=None):
    """Fuzz the generated C (random LSTM/GRU models) with libFuzzer + ASan/UBSan and a differential check."""
    argv = [sys.executable, str(ROOT / "tests/fuzz/c_fuzz.py"), "--seconds", str(_whole("seconds", seconds, 1)),
            "--models", str(_whole("models", models, 1)), "--seed", str(_whole("seed", seed))]
    c.run(shlex.join(argv + (["--workdir", workdir] if workdir else [])), pty=False)


@task(help={"tasks": "comma-separated tasks (watch,kws)", "archs": "comma-separated (gru,lstm)",
            "out": "JSON report path (default docs/benchmarks/training.json)"})
@user_errors
def train_bench(c, tasks="watch,kws", archs="gru,lstm", out=None):
    """Training benchmark: sequences/s and time to reach the target accuracy, per task and arch."""
    from training.bench import main
    rc = main(["--tasks", tasks, "--archs", archs, "--out", out or _repo("docs/benchmarks/training.json")])
    if rc:
        raise Exit(code=rc)


@task(help={
    "arch": "gru (default) | lstm",
    "dev": "fold over the eight non-test subjects only (how recipes are chosen)",
    "fold": "run only these folds, comma-separated (e.g. 0,1), to spread them over processes",
    "set_": "override a config option, KEY=VALUE (repeatable), e.g. --set seed=1 --set tempo=0.2",
    "jsonl": "append one JSON line per fold to this file (with --recipe), for invoke compare",
    "recipe": "the name the --jsonl rows carry",
    "out": "JSON report (default docs/benchmarks/watch-<cv|dev>-<arch>.json)",
    "folds": "how many folds (default 5, 4 with --dev; 10 holds out one subject at a time)",
}, iterable=["set_"])
@user_errors
def cv(c, arch="gru", dev=False, fold=None, set_=None, jsonl=None, recipe=None, out=None, folds=None):
    """Subject-wise cross-validation on watch: each fold holds out two subjects; mean and spread."""
    from training.cv import main
    argv = ["--arch", arch] + (["--dev"] if dev else [])
    if folds is not None:
        argv += ["--folds", str(_whole("folds", folds))]
    for k in str(fold).split(",") if fold is not None else []:
        argv += ["--fold", str(_whole("fold", k))]
    for kv in set_ or []:
        argv += ["--set", kv]
    for flag, value in (("--jsonl", _typed(jsonl)), ("--recipe", recipe), ("--out", _typed(out))):
        if value is not None:
            argv += [flag, value]
    _main_in_repo(main, argv)


@task(help={"run": "a watch run folder (default runs/watch-gru)",
            "recordings": "one line per test recording: its errors, what they were taken for, its posture offset",
            "placement": "how each of the ten subjects holds the watch against the others (no checkpoint needed)"})
@user_errors
def subjects(c, run=None, recordings=False, placement=False):
    """Where a watch model errs: accuracy per held-out subject, or per recording; or each subject's watch posture."""
    if placement:
        from training.placement import main
        rc = main([])
    else:
        from training.subjects import main
        rc = main([run or _repo("runs/watch-gru")] + (["--recordings"] if recordings else []))
    if rc:
        raise Exit(code=rc)


@task(help={"jsonl": "fold rows written by invoke cv --jsonl", "arch": "gru (default) | lstm",
            "baseline": "recipe name of the baseline rows", "candidate": "recipe name of the candidate rows"})
@user_errors
def compare(c, jsonl=None, baseline=None, candidate=None, arch="gru"):
    """Pair two recipes' dev folds seed by seed: adopt only if the mean gain exceeds 2 standard errors."""
    from training.compare import main
    _required("compare", jsonl=jsonl, baseline=baseline, candidate=candidate)
    rc = main([jsonl, "--arch", arch, "--baseline", baseline, "--candidate", candidate])
    if rc:
        raise Exit(code=rc)


@task(help={"out": "folder for the runs and summary.json (default runs/cuda-smoke)",
            "device": "cuda (default) or cpu (a dry run)", "epochs": "override the recipe's epochs (1 or more)"})
@user_errors
def cuda_smoke(c, out=None, device="cuda", epochs=None):
    """GPU check: train both watch models on CUDA, stream == whole, CPU reload, kill+resume, torchrun."""
    from training.cuda_smoke import main
    argv = ["--out", out or _repo("runs/cuda-smoke"), "--device", device]
    if epochs is not None:  # 0 is a value to refuse, not "the recipe's"
        argv += ["--epochs", str(_whole("epochs", epochs, minimum=1))]
    rc = main(argv)
    if rc:
        raise Exit(code=rc)


@task(help={"target": "cortex-m4 | cortex-m7 | cortex-m55 | cortex-m3 (see devices/targets.py)",
            "artifacts": "artifact folder with a c-<precision> entry (default artifacts/watch-gru)",
            "checkpoint": "or a run folder: generate and calibrate the C from it",
            "precision": "int8 | float32", "opt": "compiler optimization flag", "json": "print JSON"})
@user_errors
def firmware(c, target="cortex-m4", artifacts=None, checkpoint=None, precision="int8", opt="-O2", json=False):
    """Build the C model for a Cortex-M target, run it under QEMU, print flash/RAM/instructions per MAC."""
    from devices.cortex_m.report import firmware as run
    if artifacts is None and checkpoint is None:
        artifacts = _repo("artifacts/watch-gru")
    print(run(target=target, artifacts=artifacts, checkpoint=checkpoint, precision=precision, opt=opt, as_json=json))


@task(help={"checkpoint": "an LSTM run folder (default runs/watch-lstm; TFLite Micro has no GRU kernel)"})
@user_errors
def tflm_compare(c, checkpoint=None):
    """Our int8 C next to TFLite Micro's int8 fused LSTM: arena vs RAM, accuracy, agreement."""
    import json as _json
    from devices.cortex_m.tflm_compare import compare_tflm
    print(_json.dumps(compare_tflm(checkpoint or _repo("runs/watch-lstm")), indent=2))


def _runtime_cli(*argv) -> None:
    from runtime.__main__ import main
    rc = main([str(a) for a in argv])
    if rc:
        raise Exit(code=rc)


@task(help={"artifacts": "artifact folder (default artifacts/watch-gru)"})
@user_errors
def check(c, artifacts=None):
    """Verify every artifact's sha256 and compare it with the golden samples (exit 1 on failure)."""
    _runtime_cli("check", artifacts or _repo("artifacts/watch-gru"))


@task(help={"artifacts": "artifact folder (default artifacts/watch-gru)", "backend": "only this backend",
            "artifact": "only this artifact (manifest name)"})
@user_errors
def latency(c, artifacts=None, backend=None, artifact=None):
    """Latency per sequence and per streaming step (median, p90 after warm-up, one thread)."""
    argv = ["bench", artifacts or _repo("artifacts/watch-gru")]
    if backend:
        argv += ["--backend", backend]
    if artifact:
        argv += ["--artifact", artifact]
    _runtime_cli(*argv)


@task(help={"model": "kws artifact folder (default artifacts/kws-gru)", "wav": "16 kHz mono WAV file"})
@user_errors
def listen(c, wav=None, model=None):
    """Keyword spotting on a WAV: streaming log-mel features through the streaming model."""
    _required("listen", wav=wav)
    _runtime_cli("listen", "--model", model or _repo("artifacts/kws-gru"), "--wav", wav)


@task(help={"arch": "comma-separated architectures (default gru,lstm): folders artifacts/<task>-<arch>",
            "artifacts": "comma-separated artifact folders instead of the default ones",
            "task": "task of the default export (watch)", "out": "report folder (default docs/parity)",
            "golden_only": "golden rows only (fast)", "skip_devices": "leave out Cortex-M/QEMU and the emulated Pi"})
@user_errors
def parity(c, arch="gru,lstm", artifacts=None, task="watch", out=None, golden_only=False, skip_devices=False):
    """Parity suite: every runtime x precision against the PyTorch float reference; exits non-zero naming failing cells."""
    from parity.__main__ import invoke_parity
    extra = (["--golden-only"] if golden_only else []) + (["--skip-devices"] if skip_devices else [])
    rc = invoke_parity(arch=arch, artifacts=artifacts, task=task, out=_repo("docs/parity") if out is None else out or None,
                       extra=extra, repo=_repo("."))
    if rc:
        raise Exit(code=rc)


@task(help={"quick": "small and fast (~2-3 min): fewer repeats, small sweeps, Cortex-M4 only",
            "artifacts": "comma list of artifact folders (default artifacts/watch-gru,artifacts/watch-lstm)",
            "out": "report folder (default docs/benchmarks)",
            "only": "comma list of parts: runtimes,mcu,pi,tflm,scaling,training"})
@user_errors
def bench(c, quick=False, artifacts=None, out=None, only=None):
    """Benchmark: latency/memory/size/accuracy per runtime, Cortex-M and Pi instructions, TFLite Micro vs our C, scaling."""
    from bench.__main__ import main
    artifacts = artifacts or f"{_repo('artifacts/watch-gru')},{_repo('artifacts/watch-lstm')}"
    argv = ["--artifacts", artifacts, "--out", out or _repo("docs/benchmarks")] + (["--quick"] if quick else []) + (["--only", only] if only else [])
    rc = main(argv)
    if rc:
        raise Exit(code=rc)


def _rpi_cli(*argv) -> None:
    from devices.rpi.__main__ import main
    rc = main([str(a) for a in argv])
    if rc:
        raise Exit(code=rc)


@task(help={"artifacts": "comma list of artifact folders (default artifacts/watch-gru)",
            "artifact": "only these artifacts (manifest names, repeatable)",
            "runtimes": "runtimes the Pi gets (onnxruntime,litert,c)",
            "wheels": "include aarch64 wheels for a Pi without internet",
            "out": "output folder (default dist/rpi)", "name": "bundle name"}, iterable=["artifact"])
@user_errors
def bundle(c, artifacts=None, artifact=None, runtimes="onnxruntime,litert,c", wheels=False, out=None, name="rnn-edge-pi"):
    """Build a Raspberry Pi bundle (folder + tarball): runtime/, artifacts (C with its aarch64 library), SHA256SUMS, pins."""
    artifacts = artifacts or _repo("artifacts/watch-gru")
    argv = ["bundle", *artifacts.split(","), "--out", out or _repo("dist/rpi"), "--name", name, "--runtimes", runtimes]
    for a in artifact or []:
        argv += ["--artifact", a]
    if wheels:
        argv.append("--wheels")
    _rpi_cli(*argv)


@task(help={"host": "user@pi", "port": "SSH port (22)", "known_hosts": "known_hosts file (default ~/.ssh/known_hosts)",
            "key": "private key file", "bundle": "bundle folder (default dist/rpi/rnn-edge-pi)",
            "dir": "install folder on the Pi (~/rnn-edge)", "bench_repeats": "bench repeats on the Pi"})
@user_errors
def deploy(c, host=None, port=None, known_hosts=None, key=None, bundle=None, dir="rnn-edge", bench_repeats="50"):
    """Deploy a bundle to a Pi over SSH (strict host keys): verify sha256, check, switch atomically, bench."""
    _required("deploy", host=host)
    argv = ["deploy", bundle or _repo("dist/rpi/rnn-edge-pi"), "--host", host, "--dir", dir,
            "--bench-repeats", str(_whole("bench-repeats", bench_repeats, minimum=1))]
    for flag, value in (("--port", port), ("--known-hosts", known_hosts), ("--key", key)):
        if value is not None:
            argv += [flag, value]
    _rpi_cli(*argv)


@task
@user_errors
def pi_emulator(c):
    """Run an emulated Raspberry Pi 4 (aarch64 under QEMU) behind a loopback sshd until Ctrl-C or SIGTERM."""
    _rpi_cli("emulate")


@task(help={"artifacts": "comma list of artifact folders (default artifacts/watch-gru)"})
@user_errors
def pi_parity(c, artifacts=None):
    """ONNX Runtime and LiteRT on the emulated Pi (aarch64) against this host, same artifacts."""
    _rpi_cli("parity", *(artifacts or _repo("artifacts/watch-gru")).split(","))


@task(help={"out": "WAV to write (ground truth in OUT.json; default artifacts/kws_stream.wav)",
            "keywords": "how many keywords", "seed": "seed"})
@user_errors
def kws_stream(c, out=None, keywords="30", seed="0"):
    """Write a test recording of synthetic keywords by held-out voices, for `invoke listen`."""
    from training.data.kws_stream import make_keyword_stream
    out = out or _repo("artifacts/kws_stream.wav")
    truth = make_keyword_stream(out, seed=_whole("seed", seed), n_keywords=_whole("keywords", keywords, 1))
    print(f"wrote {out}: {len(truth)} keywords, ground truth in {out}.json")
