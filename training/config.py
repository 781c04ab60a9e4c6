"""Training configuration: a TOML file per task, overridden from the command line."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from pathlib import Path

from runtime.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclasses.dataclass
class TrainConfig:
    task: str = "watch"
    arch: str = "gru"
    hidden: tuple[int, ...] = (32, 32)  # hidden size per layer
    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    patience: int = 8  # epochs without validation improvement before stopping
    keep: str = "best"  # best: the epoch with the best validation score (early stopping) |
    # last: the final epoch of a fixed budget (no early stopping; validation only for the curves)
    augment: str = "basic"  # none | basic (time shift, gain, noise) | imu (basic + rotations)
    rotate_deg: float = 25.0  # largest random rotation of the IMU augmentation
    mirror: float = 0.0  # imu augmentation: probability of mirroring a window to the other wrist
    reverse: float = 0.0  # imu augmentation: probability of playing a window backwards (gyroscope negated)
    roll_deg: float = 0.0  # imu augmentation: largest extra roll about the forearm (watch x) axis
    tempo: float = 0.0  # imu augmentation: play each window up to (1 + tempo)x faster or slower (gyroscope scaled)
    time_shift: str = "circular"  # basic/imu augmentation: circular | none (no random circular time shift)
    dropout: float = 0.0  # between layers and before the head, training only
    label_smoothing: float = 0.0
    mixup: float = 0.0  # classification: mix training windows and their labels with weights ~ Beta(mixup, mixup)
    target_replication: float = 0.0  # classification: weight of the label asked at every step of the window's second half (0: off)
    subject_adversary: float = 0.0  # watch: weight of a subject classifier trained through a gradient reversal (training/adversary.py; 0: off)
    swa: float = 0.0  # stochastic weight averaging over this fraction of the epochs at the end (0: off)
    swa_lr: float = 1e-3  # the constant learning rate of the averaging epochs
    seed: int = 0
    threads: int = 1  # torch intra-op threads on CPU (1 is fastest on a busy 2-core box)
    device: str = "auto"  # auto | cpu | cuda
    max_minutes: float = 4.5  # wall-clock budget for the whole run (a run it stopped trains on when run again)
    out: str = ""  # run folder; default runs/<task>-<arch>
    data: dict = dataclasses.field(default_factory=dict)  # options of the task's loader ([data] table)

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        name = Path(self.task).name if Path(self.task).exists() else self.task
        return Path("runs") / f"{name}-{self.arch}"

    def swa_start(self) -> int:
        """The first epoch whose weights are averaged (``epochs`` when averaging is off)."""
        return self.epochs - int(round(self.swa * self.epochs))

    def resume_fields(self) -> dict:
        """Everything that shapes the training run (all but where and how fast it runs): a resumed run
        must have them unchanged, or its optimizer and schedule would silently keep the old ones."""
        skip = {"out", "device", "threads", "max_minutes"}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items() if k not in skip}

    def model_fields(self) -> dict:
        """The fields that fix the shape of the weights: resuming requires them unchanged."""
        return {"task": self.task, "arch": self.arch, "hidden": list(self.hidden), "data": self.data}


ARCHS = ("gru", "lstm")
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "on": True,
               "false": False, "0": False, "no": False, "off": False}


def _whole(value) -> int:
    """An integer from TOML or the command line: 2 and "2", not 2.9, true or "2.5" (no silent rounding)."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value) if not isinstance(value, str) else int(value.strip())


def _coerce(field: dataclasses.Field, value):
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    if kind == "dict":
        if not isinstance(value, dict):
            raise UserError(f"config value {field.name} must be a table, got {value!r}: write it as a [{field.name}] section of the config file, or as --set {field.name}.KEY=VALUE")
        return dict(value)
    try:
        if kind.startswith("tuple"):
            if isinstance(value, str):  # 64,64 or 64x64 or [64, 64]
                value = [v for v in value.strip("[]() ").replace("x", ",").split(",") if v.strip()]
            if isinstance(value, int):
                value = [value]
            return tuple(_whole(v) for v in value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            return _BOOL_WORDS[str(value).strip().lower()]
        if kind == "int":
            return _whole(value)
        if kind == "float":
            if isinstance(value, bool):  # TOML's true is not a number (Python's would be 1.0)
                raise TypeError(value)
            if not math.isfinite(float(value)):  # inf passes every "> 0" check below, nan fails them all silently
                raise UserError(f"config value {field.name}={value!r} is not a finite number: write e.g. "
                                f"{field.name}={field.default}")
            return float(value)
        return str(value)
    except (TypeError, ValueError, KeyError):
        hint = {"bool": ": write true or false", "tuple[int, ...]": ": write integers such as 64,64"}.get(kind, "")
        raise UserError(f"config value {field.name}={value!r} is not a valid {kind}{hint}") from None


def _leaves(table: dict, prefix: str):
    """(dotted name, value) of every value in a nested table such as ``[data]`` and ``[data.features]``."""
    for k, v in table.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}.{k}")
        else:
            yield f"{prefix}.{k}", v


def _literal(text):
    """A command-line value as TOML would read it (number, bool, string)."""
    if not isinstance(text, str):
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_config(task: str = "watch", config_file: str | None = None, **overrides) -> TrainConfig:
    """Defaults < configs/<task>.toml (or ``config_file``) < that file's ``[gru]`` or ``[lstm]`` table
    for the chosen architecture < non-None ``overrides``."""
    from training.data.base import is_path_task
    values: dict = {}
    path = Path(config_file) if config_file else CONFIG_DIR / f"{task}.toml"
    if config_file and not path.is_file():
        raise UserError(f"config file {path} not found: pass the path of a TOML file (configs/ holds one per task)")
    if path.is_file():
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"config file {path} is not valid TOML: {e}") from None
        except UnicodeDecodeError as e:
            raise UserError(f"config file {path} is not UTF-8 text ({e.reason} at byte {e.start}): save it as UTF-8") from None
    named = str(Path(task)) if is_path_task(task) else task
    if config_file and "task" in values and values["task"] != named:
        raise UserError(f"config file {path} says task = {values['task']!r} but the command line trains {task!r}: "
                        f"pass --task {values['task']} or remove task from the file")
    values.setdefault("task", named)  # data/csv/ -> data/csv
    # [gru] / [lstm] tables: options for that architecture only (file < its arch table < overrides)
    per_arch = {a: values.pop(a) for a in ARCHS if isinstance(values.get(a), dict)}
    arch = overrides.get("arch") or values.get("arch") or TrainConfig.arch
    for k, v in per_arch.get(arch, {}).items():
        values[k] = {**values.get(k, {}), **v} if isinstance(v, dict) else v
    for k, v in overrides.items():
        if v is None:
            continue
        if "." in k:  # data.window_s=4 -> the [data] table; data.features.hop=160 -> its features table
            *names, key = k.split(".")
            table = values
            for depth, name in enumerate(names, 1):
                if not isinstance(table.setdefault(name, {}), dict):
                    raise UserError(f"config option {'.'.join(names[:depth])} is not a table, so {k} cannot be set")
                table[name] = dict(table[name])
                table = table[name]
            table[key] = _literal(v)
        else:
            values[k] = v
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"unknown config option(s) {', '.join(unknown)}: valid options are {', '.join(fields)}")
    cfg = TrainConfig(**{k: _coerce(fields[k], v) for k, v in values.items()})
    for name, value in _leaves(cfg.data, "data"):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"config value {name}={value} is not a finite number: give a finite value or leave it out")
    if cfg.augment not in ("none", "basic", "imu"):
        raise UserError(f"unknown augment mode {cfg.augment!r}: choose none, basic or imu")
    if not 0.0 <= cfg.mirror <= 1.0:
        raise UserError(f"mirror = {cfg.mirror} is a probability: choose a value from 0 to 1")
    if cfg.mirror > 0 and cfg.augment != "imu":
        raise UserError(f"mirror = {cfg.mirror} mirrors IMU windows and needs augment = \"imu\" (got {cfg.augment!r})")
    if cfg.time_shift not in ("circular", "none"):
        raise UserError(f"unknown time_shift {cfg.time_shift!r}: choose circular or none")
    if not 0.0 <= cfg.reverse <= 1.0:
        raise UserError(f"reverse = {cfg.reverse} is a probability: choose a value from 0 to 1")
    for name in ("reverse", "roll_deg", "tempo"):
        if getattr(cfg, name) > 0 and cfg.augment != "imu":
            raise UserError(f"{name} = {getattr(cfg, name)} changes IMU windows and needs augment = \"imu\" "
                            f"(got {cfg.augment!r})")
    if cfg.keep not in ("best", "last"):
        raise UserError(f"unknown keep mode {cfg.keep!r}: choose best (validation) or last (final epoch)")
    if cfg.swa > 0 and cfg.keep != "last":
        raise UserError(f"swa = {cfg.swa} averages the final epochs' weights and needs keep = \"last\" (got {cfg.keep!r})")
    if cfg.arch not in ARCHS:
        raise UserError(f"unsupported architecture {cfg.arch!r}: choose lstm or gru")
    for name, ok, want in (
            ("epochs", cfg.epochs >= 1, "1 or more"),
            ("batch_size", cfg.batch_size >= 1, "1 or more"),
            ("lr", cfg.lr > 0, "a positive learning rate"),
            ("weight_decay", cfg.weight_decay >= 0, "0 or more"),
            ("grad_clip", cfg.grad_clip > 0, "a positive gradient-norm limit"),
            ("patience", cfg.patience >= 1, "1 or more epochs"),
            ("rotate_deg", 0 <= cfg.rotate_deg <= 180, "0 to 180 degrees"),
            ("roll_deg", 0 <= cfg.roll_deg <= 180, "0 to 180 degrees"),
            ("tempo", 0 <= cfg.tempo <= 1, "0 (off) to 1 (speeds from 0.5x to 2x)"),
            ("dropout", 0 <= cfg.dropout < 1, "at least 0 and below 1"),
            ("label_smoothing", 0 <= cfg.label_smoothing < 1, "at least 0 and below 1"),
            ("mixup", 0 <= cfg.mixup <= 10, "the Beta distribution's parameter, 0 (off) to 10"),
            ("target_replication", 0 <= cfg.target_replication <= 1, "a weight from 0 (off) to 1"),
            ("subject_adversary", 0 <= cfg.subject_adversary <= 10, "the gradient reversal's weight, 0 (off) to 10"),
            ("swa", 0 <= cfg.swa < 1, "a fraction of the epochs, at least 0 and below 1"),
            ("swa_lr", cfg.swa_lr > 0, "a positive learning rate"),
            ("threads", 1 <= cfg.threads <= (os.cpu_count() or 1), f"1 to {os.cpu_count() or 1} (this machine's CPUs)"),
            ("seed", 0 <= cfg.seed < 2 ** 32, "0 to 4294967295"),
            ("max_minutes", cfg.max_minutes > 0, "a positive number of minutes")):
        if not ok:
            raise UserError(f"{name} = {getattr(cfg, name)} is out of range: choose {want}")
    return cfg
