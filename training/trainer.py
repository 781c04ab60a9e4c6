"""The training loop: CPU, one CUDA GPU (cuDNN RNNs), or several processes with DDP.

Launch several processes with ``torchrun --nproc_per_node N -m training.train ...``; each rank
trains on its shard of every epoch (DistributedSampler), gradients are averaged by DDP (NCCL on
GPUs, gloo on CPU) and only rank 0 writes files. The checkpoint is the same either way.

Each epoch ends with an atomic ``train_state.pt`` (resume after a kill) and, when validation
improves, an atomic ``model.safetensors`` (the best weights, what export reads).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from runtime.atomic import write_json
from runtime.errors import UserError
from training.adversary import SubjectAdversary, reversal_weight, subject_indices
from training.augment import augment_batch, mix_windows
from training.checkpoint import load_train_state, save_model, save_train_state
from training.config import TrainConfig
from training import forecast
from training.data import SequenceData, load_task
from training.data.base import same_task
from training.models import ModelSpec, SequenceModel


# -- where to run ---------------------------------------------------------------------------
@dataclasses.dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> Dist:
    """Join the process group when started by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def full_fp32_on_cuda() -> None:
    """Make cuDNN RNNs and CUDA matmuls compute in IEEE float32, not TF32.

    PyTorch lets cuDNN use TF32 (a 10-bit mantissa) by default on Ampere and later GPUs. For these
    models that moved the scores by up to 1.3e-2 between the whole-sequence and the streaming run on
    an H200 (``python -m training.cuda_smoke``), where float32 gives 1e-6: the exported float32 models
    are verified against the checkpoint's float32 outputs, so the GPU must compute those too. The
    models are small, so the cost in training speed is small (docs/training.md, CUDA)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def pick_device(requested: str, dist: Dist | None = None) -> torch.device:
    """``auto`` takes CUDA when present; ``cuda`` without a GPU is a clear error. On CUDA, float32
    stays IEEE float32 (``full_fp32_on_cuda``)."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device 'cuda' requested but no CUDA GPU is visible: train on the CPU (--device cpu, or --set device=cpu)")
        full_fp32_on_cuda()
        return torch.device("cuda", dist.local_rank if dist else 0)
    if requested != "cpu":
        raise UserError(f"unknown device {requested!r}: use auto, cpu or cuda")
    return torch.device("cpu")


def rank_shard(order: np.ndarray, dist: Dist) -> np.ndarray:
    """This rank's part of an epoch's ``order``. Under DDP every rank must run the same number of
    batches (each waits for the others' gradients), so ``order`` is first padded by repeating its
    start to a multiple of the world size, as DistributedSampler does."""
    if dist.world > 1:
        order = np.resize(order, -(-len(order) // dist.world) * dist.world)
    return order[dist.rank::dist.world]


def run_minutes(t0: float, dist: Dist, device: torch.device) -> float:
    """Minutes since ``t0``; under DDP the largest of the ranks' clocks, so that all ranks take the time
    budget's stop after the same epoch (a rank that stopped alone would leave the others waiting)."""
    minutes = (time.perf_counter() - t0) / 60
    if dist.world > 1:
        import torch.distributed as tdist
        clock = torch.tensor([minutes], dtype=torch.float64, device=device)
        tdist.all_reduce(clock, op=tdist.ReduceOp.MAX)
        minutes = float(clock.item())
    return minutes


# -- numerics -------------------------------------------------------------------------------
def normalize(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((X - mean) / std).astype(np.float32)


@torch.no_grad()
def evaluate(model: SequenceModel, X: np.ndarray, y: np.ndarray, device, batch: int = 512, ignore_frames: int = 0):
    """Mean loss, accuracy and predictions on a normalized split.

    A frames model (labels ``y [N, T]``): loss per sequence summed over frames from ``ignore_frames``
    on, accuracy over those frames, predictions ``[N, T]``.
    """
    model.eval()
    losses, preds = [], []
    for i in range(0, len(X), batch):
        xb = torch.from_numpy(X[i:i + batch]).to(device)
        yb = torch.from_numpy(y[i:i + batch]).to(device)
        logits = model(xb)
        losses.append(frame_loss(logits, yb, ignore_frames, reduction="sum").item())
        preds.append(logits.argmax(-1).cpu().numpy())
    pred = np.concatenate(preds)
    ok = pred == y
    return sum(losses) / len(X), float((ok[:, ignore_frames:] if ok.ndim == 2 else ok).mean()), pred


def frame_loss(logits: torch.Tensor, y: torch.Tensor, ignore_frames: int = 0, **kw) -> torch.Tensor:
    """Cross-entropy; for per-frame logits ``[B, T, K]`` over frames ``ignore_frames`` and later.

    ``reduction="sum"`` sums per sequence means (so the evaluation loss is per sequence)."""
    if logits.ndim == 2:
        return F.cross_entropy(logits, y, **kw)
    lg, yy = logits[:, ignore_frames:], y[:, ignore_frames:]
    k = lg.shape[-1]
    if kw.get("reduction") == "sum":
        return F.cross_entropy(lg.reshape(-1, k), yy.reshape(-1), **kw) / max(1, lg.shape[1])
    return F.cross_entropy(lg.reshape(-1, k), yy.reshape(-1), **kw)


def replicated_target_loss(frame_logits: torch.Tensor, y: torch.Tensor, weight: float, **kw) -> torch.Tensor:
    """Target replication (Lipton et al., "Learning to diagnose with LSTM recurrent neural networks",
    ICLR 2016) for a classifier read at the last step: ``(1 - weight) * CE(last step) + weight * mean CE
    over the second half of the window``, every step there asked for the window's label. The first
    half is left out: a few frames into a window the class is not yet in the input."""
    t = frame_logits.shape[1]
    last = F.cross_entropy(frame_logits[:, -1], y, **kw)
    half = frame_logits[:, t // 2:]
    rep = F.cross_entropy(half.reshape(-1, half.shape[-1]), y.repeat_interleave(half.shape[1]), **kw)
    return (1 - weight) * last + weight * rep


@torch.no_grad()
def predict(model: SequenceModel, X: np.ndarray, device, batch: int = 512) -> np.ndarray:
    """Head outputs ``[N, K]`` on a normalized split."""
    model.eval()
    return np.concatenate([model(torch.from_numpy(X[i:i + batch]).to(device)).cpu().numpy()
                           for i in range(0, len(X), batch)])


def evaluate_forecast(model: SequenceModel, X: np.ndarray, Y: np.ndarray, device) -> tuple[float, float, np.ndarray]:
    """MSE, MAE and predictions of a forecast model on a normalized split (targets in target space)."""
    pred = predict(model, X, device)
    e = forecast.errors(pred, Y)
    return e["mse"], e["mae"], pred


def confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (y, pred), 1)
    return m


def swa_lr_factor(swa_start: int, swa_factor: float):
    """Learning-rate multiplier per epoch for stochastic weight averaging (Izmailov et al. 2018):
    cosine from 1 down to ``swa_factor`` over epochs [0, swa_start), then constant ``swa_factor``
    while the weights of the epochs from ``swa_start`` on are averaged."""
    def factor(epoch: int) -> float:
        if epoch >= swa_start:
            return swa_factor
        return swa_factor + (1 - swa_factor) * 0.5 * (1 + math.cos(math.pi * epoch / max(1, swa_start)))
    return factor


# -- the run --------------------------------------------------------------------------------
def changed_fields(saved: dict | None, now: dict) -> list[str]:
    """The fields of a saved run's config that differ from ``now``'s; a data path named two ways
    (``data/x.npz``, ``/abs/data/x.npz``) is the same task."""
    saved = saved or {}
    return sorted(k for k in set(saved) | set(now)
                  if saved.get(k) != now.get(k) and not (k == "task" and same_task(saved.get(k), now.get(k))))


def diverged(cfg: TrainConfig, epoch: int, which: str, value: float) -> UserError:
    """The error of a run whose loss left the finite numbers: nothing of that epoch is saved."""
    return UserError(f"training diverged at epoch {epoch + 1}: the {which} loss is {value}; the run folder keeps "
                     f"the epoch before. Lower lr (now {cfg.lr}) or weight_decay (now {cfg.weight_decay}) and "
                     f"start over with --fresh")


def check_run_folder(cfg: TrainConfig, resume: bool, writable: bool = True) -> dict | None:
    """What refuses a run before any data is loaded: a run folder that cannot be written (checked when
    ``writable``), or a training state there that this config cannot resume. Returns that state when
    the run resumes it, else None."""
    out = cfg.run_dir()
    state_path = out / "train_state.pt"
    if writable:
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise UserError(f"cannot write to run folder {out}: {e.strerror}; choose another run folder (--out; --runs for cross-validation)") from None
    st = load_train_state(state_path) if resume and state_path.exists() else None
    if st is not None:
        if changed_fields(st.get("model_fields"), cfg.model_fields()):
            raise UserError(f"cannot resume {state_path}: it was trained with {st.get('model_fields')}, "
                            f"not {cfg.model_fields()}; use another --out or delete the folder")
        if st.get("swa_start", cfg.epochs) != cfg.swa_start():  # (== epochs when averaging is off)
            raise UserError(f"cannot resume {state_path}: its weight averaging (swa, epochs) differs from this "
                            f"config's (swa = {cfg.swa}, epochs = {cfg.epochs}); use another --out or delete the folder")
        was = st.get("resume_fields")  # (states written before 2026-11-29 lack it)
        changed = changed_fields(was, cfg.resume_fields()) if was is not None else []
        if changed:
            raise UserError(f"cannot resume {state_path}: {', '.join(f'{k} {was.get(k)!r} -> {cfg.resume_fields()[k]!r}' for k in changed)} "
                            f"would not apply to the saved optimizer and schedule; use another --out, or --fresh to start over")
    return st


def check_resumed_spec(st: dict | None, spec: ModelSpec, state_path) -> None:
    """Refuse to resume a state whose model the data no longer gives (other channels or classes)."""
    if st is not None and st.get("spec") != spec.to_json():
        raise UserError(f"cannot resume {state_path}: it was trained on data giving the model {st.get('spec')}, "
                        f"not {spec.to_json()}; use another --out or delete the folder")


def train(cfg: TrainConfig, data: SequenceData | None = None, resume: bool = True,
          progress: bool = True, cache_dir: str = ".cache", track_test: bool = False) -> dict:
    """Train per ``cfg``; returns the metrics dict also written to ``metrics.json``.

    ``track_test`` also records test accuracy per epoch (for the time-to-accuracy benchmark only;
    no decision is taken on it).
    """
    torch.set_num_threads(max(1, cfg.threads))
    dist = init_distributed("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    device = pick_device(cfg.device, dist)
    out = cfg.run_dir()
    state_path = out / "train_state.pt"
    swa_start = cfg.swa_start()
    # a training state that cannot be resumed is refused before the data is loaded (kws: speech synthesis)
    st = check_run_folder(cfg, resume, writable=dist.main)
    if cfg.swa > 0 and cfg.swa_start() == cfg.epochs and dist.main:  # (a short run of a recipe that averages)
        least = next(k / 100 for k in range(1, 101) if round(k / 100 * cfg.epochs) >= 1)
        print(f"warning: swa = {cfg.swa} of {cfg.epochs} epochs averages no epoch: training without weight "
              f"averaging (swa = {least:g} or more averages one; swa = 0 turns it off)", file=sys.stderr)

    data = data or load_task(cfg.task, cache_dir=cache_dir, seed=cfg.seed, **cfg.data)
    mean, std = data.normalization()
    Xtr, Xva, Xte = (normalize(X, mean, std) for X in (data.X_train, data.X_val, data.X_test))
    spec = ModelSpec(cfg.arch, data.input_size, tuple(cfg.hidden), data.num_classes, head=data.head)
    is_forecast = data.head == "forecast"
    is_frames = data.head == "frames"
    ignore_frames = int(data.info.get("ignore_frames", 0)) if is_frames else 0
    if is_frames and cfg.augment != "none":
        raise UserError(f"augment = {cfg.augment!r} shifts windows in time and the frame labels would not follow: "
                        f"use augment = \"none\" for task {cfg.task}")
    if cfg.augment == "imu" and data.input_size < 6:  # (augment_batch would do only the basic augmentation)
        raise UserError(f"augment = \"imu\" turns the accelerometer and gyroscope triplets (channels 0-5) and needs "
                        f"6 or more channels, but {cfg.task} has {data.input_size}: use augment = \"basic\"")
    if cfg.mixup > 0 and (is_forecast or is_frames):
        raise UserError(f"mixup = {cfg.mixup} mixes class labels and needs a classification task, "
                        f"not the {data.head} head of {cfg.task}: use mixup = 0")
    if cfg.label_smoothing > 0 and is_forecast:
        raise UserError(f"label_smoothing = {cfg.label_smoothing} smooths class labels and needs a classification task, "
                        f"not the forecast head of {cfg.task}: use label_smoothing = 0")
    # The training-only losses need one whole label per window: a last-step classifier, no mixup. The
    # adversary also needs who made each window, and one process (its classifier reads the model's
    # steps outside the DDP wrapper; target replication reads them through it).
    # (option, what it needs, needs subjects, one process only, why not mixup)
    for name, needs, needs_subjects, one_process, mixed in (
            ("target_replication", "a classification head read at the last step", False, False,
             "asks every step for one label, and mixup mixes two"),
            ("subject_adversary", "a classification task that records who made each training window (watch)", True, True,
             "mixes windows of two subjects with mixup")):
        if getattr(cfg, name) > 0:
            why = (f"needs {needs}" if is_forecast or is_frames or (needs_subjects and data.groups_train is None)
                   else "trains in one process (it reads the model's steps outside the DDP wrapper)"
                   if one_process and dist.world > 1
                   else f"{mixed}; use mixup = 0" if cfg.mixup > 0 else None)
            if why:
                raise UserError(f"{name} = {getattr(cfg, name)} {why}: use {name} = 0 here")
    if is_forecast:  # targets in the model's (normalized) space; float32 [N, horizon * C]
        if cfg.augment != "none":
            raise UserError(f"augment = {cfg.augment!r} changes the inputs but not the future frames a forecast "
                            f"must predict: use augment = \"none\" for task {cfg.task}")
        Ytr, Yva, Yte = (forecast.target_space(Y, mean, std) for Y in (data.y_train, data.y_val, data.y_test))
    else:
        Ytr, Yva, Yte = data.y_train, data.y_val, data.y_test

    torch.manual_seed(cfg.seed)
    try:
        model = SequenceModel(spec, dropout=cfg.dropout).to(device)
    except (MemoryError, RuntimeError) as e:  # (torch's CPU allocator and CUDA both raise RuntimeErrors)
        if not isinstance(e, MemoryError) and "alloc" not in str(e) and "out of memory" not in str(e):
            raise
        raise UserError(f"a model with hidden sizes {list(cfg.hidden)} does not fit in memory on {device}: "
                        f"choose smaller ones (e.g. --set hidden=64,64)") from None
    adversary, subject_of = None, None
    if cfg.subject_adversary > 0:  # training only: never saved with the model (training/adversary.py)
        subject_of, n_subjects = subject_indices(data.groups_train)
        adversary = SubjectAdversary(spec.hidden_sizes[-1], n_subjects).to(device)
    trained = list(model.parameters()) + (list(adversary.parameters()) if adversary is not None else [])
    opt = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if swa_start < cfg.epochs:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, swa_lr_factor(swa_start, cfg.swa_lr / cfg.lr))
        averaged = torch.optim.swa_utils.AveragedModel(model)
        averaged.module.flatten_parameters()  # the deep copy left its weights outside cuDNN's buffer
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
        averaged = None
    history: list[dict] = []
    start_epoch, best_acc, best_epoch, elapsed_before = 0, -math.inf, -1, 0.0
    aug_state = None  # the augmentation generator's state of a resumed run

    check_resumed_spec(st, spec, state_path)
    if st is not None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        if averaged is not None:
            averaged.load_state_dict(st["averaged"])
        if adversary is not None:
            adversary.load_state_dict(st["adversary"])
        start_epoch, best_acc, best_epoch = st["epoch"] + 1, st["best_acc"], st["best_epoch"]
        history, elapsed_before = json.loads(st["history"]), st["elapsed_s"]
        if "rng" in st:  # random draws continue where the killed run left them: dropout (CPU generator) ...
            torch.set_rng_state(st["rng"])
            aug_state = st["aug_rng"] if dist.world == 1 else None  # ... and augmentation (only rank 0's is saved)
    epochs_without_gain = 0 if best_epoch < 0 else max(0, (start_epoch - 1) - best_epoch)
    # A run that stopped early is finished: run again, it is evaluated, not trained on (each call would
    # otherwise add an epoch). One stopped by the time budget trains on, as a killed run does.
    finished = None
    if st is not None and start_epoch < cfg.epochs and cfg.keep == "best" and epochs_without_gain >= cfg.patience:
        finished = f"early stop: no validation gain for {cfg.patience} epochs"
    if st is not None and dist.main:
        print(f"{out} had already stopped ({finished or f'all {cfg.epochs} epochs run'}): evaluating its model"
              if finished or start_epoch >= cfg.epochs else f"resuming {out} at epoch {start_epoch}")

    net = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    meta = {"task": cfg.task, "class_names": data.class_names, "dataset": data.info,
            "input_mean": mean.tolist(), "input_std": std.tolist(), "seq_len": int(data.X_train.shape[1]),
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
            "world_size": dist.world, "device": device.type}
    if is_forecast:
        meta["head"] = "forecast"
        meta["forecast"] = {"horizon": data.horizon, "channels": data.input_size, "space": "normalized",
                            "layout": "time-major: output s*C + c is frame t+1+s of channel c"}
    if is_frames:
        meta["head"] = "frames"
        meta["frames"] = {"ignore_frames": ignore_frames, "settle_frames": int(data.info.get("settle_frames", 0)),
                          "layout": "scores [N, T, K]: class scores after every frame; labels y [N, T]"}
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + dist.rank)  # augmentation draws
    if aug_state is not None:
        gen.set_state(aug_state)
    mean_t, std_t = torch.from_numpy(mean), torch.from_numpy(std)
    t0 = time.perf_counter() - elapsed_before
    epochs_left = range(start_epoch, start_epoch if finished else cfg.epochs)
    bar = _progress(epochs_left, enabled=progress and dist.main and len(epochs_left) > 0,  # (no empty bar for a finished run)
                    desc=f"{cfg.task}-{cfg.arch}")
    stop_reason = finished or "epochs"
    for epoch in bar:
        net.train()
        ep_gen = torch.Generator().manual_seed(cfg.seed * 7919 + epoch)  # same order on every rank
        order = rank_shard(torch.randperm(len(Xtr), generator=ep_gen).numpy(), dist)
        total, seen, subject_total = 0.0, 0, 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            xb = torch.from_numpy(Xtr[idx])
            xb = augment_batch(xb, gen, cfg.augment, mean_t, std_t, cfg.rotate_deg, cfg.mirror, cfg.reverse,
                               cfg.roll_deg, cfg.time_shift, cfg.tempo)
            yb = torch.from_numpy(Ytr[idx])
            if cfg.mixup > 0:  # classification heads only: refused above for forecast and frames
                xb, yb = mix_windows(xb, yb, data.num_classes, cfg.mixup, gen)
            xb, yb = xb.to(device, non_blocking=True), yb.to(device)
            every_step = cfg.target_replication > 0  # a last-step classifier then (checked above)
            if is_forecast:
                loss = F.mse_loss(net(xb), yb)
            else:
                if adversary is not None:  # one process, classification (checked above)
                    h = model.features(xb)
                    scores = model.head(model.drop(h if every_step else h[:, -1]))
                    weight = reversal_weight((epoch + i / len(order)) / cfg.epochs, cfg.subject_adversary)
                    who = torch.from_numpy(subject_of[idx]).to(device)
                    subject_loss = F.cross_entropy(adversary(h[:, -1], weight), who)
                    subject_total += subject_loss.item() * len(idx)
                else:  # through the DDP wrapper when there is one
                    scores = net(xb, every_step=every_step)
                loss = (replicated_target_loss(scores, yb, cfg.target_replication, label_smoothing=cfg.label_smoothing)
                        if every_step else frame_loss(scores, yb, ignore_frames, label_smoothing=cfg.label_smoothing))
            batch_loss = loss.item()
            if not math.isfinite(batch_loss):
                raise diverged(cfg, epoch, "training", batch_loss)
            opt.zero_grad(set_to_none=True)
            (loss if adversary is None else loss + subject_loss).backward()
            torch.nn.utils.clip_grad_norm_(trained if adversary is not None else net.parameters(), cfg.grad_clip)
            opt.step()
            total, seen = total + batch_loss * len(idx), seen + len(idx)
        sched.step()
        if averaged is not None and epoch >= swa_start:
            averaged.update_parameters(model)
        scored = averaged.module if averaged is not None and epoch >= swa_start else model  # what is validated and saved
        if is_forecast:  # the "score" to maximize is -MSE (best_acc holds the best score)
            va_loss, va_mae, _ = evaluate_forecast(scored, Xva, Yva, device)
            va_acc = -va_loss
            history.append({"epoch": epoch, "train_loss": total / max(1, seen), "val_loss": va_loss, "val_mse": va_loss,
                            "val_mae": va_mae, "elapsed_s": time.perf_counter() - t0})
            if track_test:
                history[-1]["test_mse"] = evaluate_forecast(scored, Xte, Yte, device)[0]
        else:
            va_loss, va_acc, _ = evaluate(scored, Xva, data.y_val, device, ignore_frames=ignore_frames)
            history.append({"epoch": epoch, "train_loss": total / max(1, seen), "val_loss": va_loss, "val_acc": va_acc,
                            "elapsed_s": time.perf_counter() - t0})
            if adversary is not None:  # the subject classifier's loss (ln S: it cannot tell the subjects apart)
                history[-1]["subject_loss"] = subject_total / max(1, seen)
            if track_test:
                history[-1]["test_acc"] = evaluate(scored, Xte, data.y_test, device, ignore_frames=ignore_frames)[1]
        if not math.isfinite(va_loss):  # the last step's weights went non-finite
            raise diverged(cfg, epoch, "validation", va_loss)
        improved = va_acc > best_acc or cfg.keep == "last"
        if improved:
            best_acc, best_epoch, epochs_without_gain = va_acc, epoch, 0
        else:
            epochs_without_gain += 1
        if dist.main:
            if improved:
                save_model(out / "model.safetensors", scored, {**meta, "epoch": epoch,
                                                              **({"val_mse": va_loss} if is_forecast else {"val_acc": va_acc})})
            save_train_state(state_path, {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                **({"averaged": averaged.state_dict(), "swa_start": swa_start} if averaged is not None else {}),
                **({"adversary": adversary.state_dict()} if adversary is not None else {}),
                "rng": torch.get_rng_state(), "aug_rng": gen.get_state(),
                "epoch": epoch, "best_acc": best_acc, "best_epoch": best_epoch, "history": json.dumps(history),
                "elapsed_s": time.perf_counter() - t0, "model_fields": cfg.model_fields(), "resume_fields": cfg.resume_fields(),
                "spec": spec.to_json()})
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}", **({"val_mse": f"{va_loss:.4f}"} if is_forecast
                                else {"val_acc": f"{va_acc:.3f}", cfg.keep: f"{best_acc:.3f}"}))
        if cfg.keep == "best" and epochs_without_gain >= cfg.patience:
            stop_reason = f"early stop: no validation gain for {cfg.patience} epochs"
            break
        if run_minutes(t0, dist, device) > cfg.max_minutes:
            stop_reason = f"time budget of {cfg.max_minutes} min reached"
            break
    if hasattr(bar, "close"):
        bar.close()
    if dist.world > 1:
        import torch.distributed as tdist
        tdist.barrier()

    if best_epoch < 0:  # (guards the load below from reading an older run's model in a reused folder)
        raise UserError(f"no epoch of this run gave a model to keep in {out}: check the data, or start over with --fresh")
    # Evaluate the best weights (what was saved), not the last epoch's.
    from training.checkpoint import load_model
    best, _ = load_model(out / "model.safetensors")
    best = best.to(device)
    if is_forecast:
        return _finish_forecast(cfg, out, dist, data, best, device, Xte, Yte, Xva, Yva, best_acc, best_epoch,
                                history, stop_reason, len(Xtr))
    if is_frames:
        return _finish_frames(cfg, out, dist, data, best, device, Xte, best_acc, best_epoch, history, stop_reason,
                              len(Xtr), ignore_frames)
    te_loss, te_acc, te_pred = evaluate(best, Xte, data.y_test, device)
    metrics = {**_run_fields(cfg, dist, data, device, history, stop_reason, len(Xtr), Xtr.shape[1]),
               "test_acc": te_acc, "test_loss": te_loss, "best_val_acc": best_acc, "best_epoch": best_epoch,
               "confusion": confusion(data.y_test, te_pred, data.num_classes).tolist()}
    return _save_metrics(out, dist, metrics)


def _run_fields(cfg, dist, data, device, history, stop_reason, n_train, seq_len) -> dict:
    """The metrics.json fields every head shares: what ran, where, how long, and the curves."""
    return {"task": cfg.task, "arch": cfg.arch, "hidden": list(cfg.hidden), "epochs_run": len(history),
            "stop_reason": stop_reason, "train_seconds": history[-1]["elapsed_s"] if history else 0.0,
            "train_examples": n_train, "seq_len": int(seq_len), "world_size": dist.world, "device": device.type,
            "threads": cfg.threads, "synthetic": bool(data.info.get("synthetic", False)), "keep": cfg.keep,
            "val_in_train": bool(data.info.get("val_in_train", False)),
            "class_names": data.class_names, "history": history}


def _save_metrics(out, dist, metrics: dict) -> dict:
    """metrics.json and the plots beside the checkpoint (main process only); returns ``metrics``."""
    if dist.main:
        try:
            write_json(out / "metrics.json", metrics)
            from training.plots import plot_run
            plot_run(out, metrics)
        except ImportError:
            pass
        except OSError as e:  # (a full disk)
            raise UserError(f"cannot write the metrics and plots to {out}: {e.strerror or e}; free space or choose "
                            f"another --out") from None
    return metrics


def _finish_forecast(cfg, out, dist, data, best, device, Xte, Yte, Xva, Yva, best_score, best_epoch, history,
                     stop_reason, n_train) -> dict:
    """metrics.json of a forecast run: test MSE/MAE against the naive last-value forecast."""
    te = forecast.report(predict(best, Xte, device), Yte, Xte, data.horizon)
    va = forecast.report(predict(best, Xva, device), Yva, Xva, data.horizon)
    metrics = {**_run_fields(cfg, dist, data, device, history, stop_reason, n_train, Xte.shape[1]),
               "head": "forecast", "horizon": data.horizon, "channels": data.input_size,
               "units": "normalized (per-channel z-score)",
               "test_mse": te["mse"], "test_mae": te["mae"], "test_naive_mse": te["naive_mse"],
               "test_naive_mae": te["naive_mae"], "test_mse_ratio": te["mse_ratio"], "test_mae_ratio": te["mae_ratio"],
               "test_loss": te["mse"], "val": va, "best_val_mse": -best_score, "best_epoch": best_epoch,
               "test_examples": int(len(Xte))}
    return _save_metrics(out, dist, metrics)


def _finish_frames(cfg, out, dist, data, best, device, Xte, best_acc, best_epoch, history, stop_reason,
                   n_train, ignore_frames) -> dict:
    """metrics.json of a sequence-labelling run: frame accuracy (after the ignored start), every frame,
    and settled (``settle_frames`` after the start and after each change); per-frame confusion."""
    from training import frames
    te_loss = evaluate(best, Xte, data.y_test, device, ignore_frames=ignore_frames)[0]
    scores = predict(best, Xte, device)
    settle = int(data.info.get("settle_frames", 0))
    fm = frames.frame_metrics(scores, data.y_test, ignore_frames, settle)
    metrics = {**_run_fields(cfg, dist, data, device, history, stop_reason, n_train, Xte.shape[1]),
               "head": "frames",
               "test_acc": fm["frame_acc"], "test_frame_acc": fm["frame_acc"], "test_frame_acc_all": fm["frame_acc_all"],
               "test_settled_acc": fm.get("settled_acc"), "settled_frames": fm.get("settled_frames"),
               "ignore_frames": ignore_frames, "settle_frames": settle, "test_loss": te_loss,
               "best_val_acc": best_acc, "best_epoch": best_epoch, "test_examples": int(len(Xte)),
               "confusion": frames.confusion(scores.argmax(-1), data.y_test, data.num_classes, ignore_frames).tolist()}
    return _save_metrics(out, dist, metrics)


def _progress(it, enabled: bool, desc: str):
    if not enabled:
        return it
    try:
        from tqdm import tqdm
    except ImportError:
        return it
    return tqdm(it, desc=desc, unit="epoch", dynamic_ncols=True)
