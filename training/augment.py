"""Training-time augmentation of IMU and other sequence windows, as pure functions of a seeded
torch Generator (so a resumed run draws what the killed one would have): physically consistent IMU
transforms (other wrist, played backwards, another tempo, the watch turned), the per-batch
``augment_batch`` the trainer calls, and mixup."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from training.data.watch import MIRROR_SIGNS


def mirror_to_other_wrist(raw: torch.Tensor) -> torch.Tensor:
    """IMU windows ``[..., 6+]`` in raw units as the same watch worn on the other wrist would record them."""
    signs = torch.ones(raw.shape[-1], dtype=raw.dtype, device=raw.device)
    signs[:6] = torch.tensor(MIRROR_SIGNS, dtype=raw.dtype)
    return raw * signs


def play_backwards(raw: torch.Tensor) -> torch.Tensor:
    """IMU windows ``[batch, time, 6+]`` in raw units as the same movement played backwards would
    record them: time reversed, the gyroscope negated (a motion R(T - t) turns at -w(T - t)); the
    accelerometer keeps its sign (gravity and the second derivative of position are unchanged)."""
    signs = torch.ones(raw.shape[-1], dtype=raw.dtype, device=raw.device)
    signs[3:6] = -1.0
    return raw.flip(1) * signs


def change_tempo(raw: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
    """IMU windows ``[batch, time, 6+]`` in raw units as the same movement done ``speed`` times as fast
    (one speed per window) would record them: a motion R(s t) turns at s w(s t), so the window is
    resampled about its centre and the gyroscope multiplied by s. The accelerometer is resampled but
    not rescaled: exact for its gravity term, which dominates these slow arm movements (the motion
    term, ~0.25 g for a wrist 0.6 m from the shoulder at 2 rad/s, would scale by s^2). A faster
    window needs more than the window holds: it wraps round, as the circular time shift does.
    Linear interpolation between samples."""
    b, t, _ = raw.shape
    centre = (t - 1) / 2
    pos = centre + speed[:, None].to(raw.dtype) * (torch.arange(t, dtype=raw.dtype) - centre)  # [b, t]
    lo = pos.floor()
    frac = (pos - lo)[..., None]
    lo = lo.long() % t
    rows = torch.arange(b)[:, None]
    out = raw[rows, lo] * (1 - frac) + raw[rows, (lo + 1) % t] * frac
    return torch.cat([out[..., :3], out[..., 3:6] * speed[:, None, None].to(raw.dtype), out[..., 6:]], -1)


def rotations_about_x(n: int, max_deg: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` rotation matrices about the watch's x axis (along the forearm), each by at most ``max_deg``."""
    angle = (torch.rand(n, generator=gen) * 2 - 1) * max_deg * torch.pi / 180
    s, c = angle.sin(), angle.cos()
    rot = torch.zeros(n, 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    return rot


def random_rotations(n: int, max_deg: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` random 3-D rotation matrices, each by at most ``max_deg`` about a random axis."""
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=1)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * max_deg * torch.pi / 180
    k = torch.zeros(n, 3, 3)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)
    s, c = angle.sin()[:, None, None], angle.cos()[:, None, None]
    return torch.eye(3) + s * k + (1 - c) * k @ k  # Rodrigues' formula


def augment_batch(x: torch.Tensor, gen: torch.Generator, mode: str = "basic",
                  mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
                  max_deg: float = 25.0, mirror: float = 0.0, reverse: float = 0.0,
                  roll_deg: float = 0.0, time_shift: str = "circular", tempo: float = 0.0) -> torch.Tensor:
    """Training-time augmentation on normalized windows ``[batch, time, channels]``.

    basic: random circular time shift (``time_shift="none"`` leaves it out), per-channel gain,
           additive noise.
    imu:   basic + the same random rotation (up to ``max_deg``) of the accelerometer (channels 0-2)
           and gyroscope (3-5) triplets: a watch worn slightly differently. Done in raw units.
           With probability ``mirror``, the window is first mirrored to the other wrist (see
           ``MIRROR_SIGNS``); with probability ``reverse``, played backwards (``play_backwards``);
           ``roll_deg`` adds a roll about the forearm of up to that angle; ``tempo`` > 0 plays each
           window at a speed drawn log-uniformly from [1 / (1 + tempo), 1 + tempo] (``change_tempo``).
    """
    if mode == "none":
        return x
    b, t, c = x.shape
    if mode == "imu" and c >= 6 and mean is not None:
        raw = x * std + mean
        if mirror > 0:
            flip = torch.rand(b, 1, 1, generator=gen) < mirror
            raw = torch.where(flip, mirror_to_other_wrist(raw), raw)
        if reverse > 0:
            back = torch.rand(b, 1, 1, generator=gen) < reverse
            raw = torch.where(back, play_backwards(raw), raw)
        if tempo > 0:
            raw = change_tempo(raw, torch.exp((torch.rand(b, generator=gen) * 2 - 1) * math.log1p(tempo)))
        rot = random_rotations(b, max_deg, gen)
        if roll_deg > 0:
            rot = rot @ rotations_about_x(b, roll_deg, gen)
        raw = torch.cat([raw[..., 0:3] @ rot.transpose(1, 2), raw[..., 3:6] @ rot.transpose(1, 2), raw[..., 6:]], -1)
        x = (raw - mean) / std
    if time_shift == "circular":
        shift = int(torch.randint(0, t, (1,), generator=gen))
        x = torch.roll(x, shift, dims=1)
    gain = 1 + 0.1 * torch.randn(b, 1, c, generator=gen)
    return x * gain + 0.05 * torch.randn(x.shape, generator=gen)


def beta_draws(n: int, a: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` draws from Beta(a, a) using only ``gen``'s uniforms (Johnk's algorithm: with U, V uniform,
    X = U^(1/a) and Y = V^(1/a), X / (X + Y) given X + Y <= 1 is Beta(a, a)), so that the draws are
    seeded and resumable like the rest of the augmentation."""
    out = torch.empty(n)
    todo = torch.arange(n)
    while len(todo):
        u, v = torch.rand(len(todo), generator=gen), torch.rand(len(todo), generator=gen)
        x, y = u ** (1 / a), v ** (1 / a)
        ok = (x + y <= 1) & (x + y > 0)
        out[todo[ok]] = x[ok] / (x[ok] + y[ok])
        todo = todo[~ok]
    return out


def mix_windows(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al., 2018): window i becomes lam_i x_i + (1 - lam_i) x_j, with j = perm(i) for a
    random permutation of the batch (j = i leaves the window as it was) and lam_i ~ Beta(alpha, alpha);
    its target the same mix of the two one-hot labels. Returns the mixed windows ``[B, T, C]`` and soft targets ``[B, K]``."""
    lam = beta_draws(len(x), alpha, gen)
    j = torch.randperm(len(x), generator=gen)
    onehot = F.one_hot(y, num_classes).to(x.dtype)
    return (lam[:, None, None] * x + (1 - lam[:, None, None]) * x[j],
            lam[:, None] * onehot + (1 - lam[:, None]) * onehot[j])
