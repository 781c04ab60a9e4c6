"""Log-mel audio features: the one front-end shared by training and every device (numpy only).

The math, per frame ``i`` (no padding: frame ``i`` covers samples ``[i*hop, i*hop + win)``)::

    frame   = audio[i*hop : i*hop + win] * hann            periodic Hann, win = 400 (25 ms @ 16 kHz)
    power   = |rfft(frame, n_fft)|^2                      n_fft = 512 -> 257 bins (zero-padded)
    mel     = power @ mel_filterbank                      40 triangular filters, HTK mel scale,
                                                          20 Hz .. 8 kHz, peak 1 (not area-normalised)
    feature = log(mel + 1e-6)                             natural log; the floor keeps silence finite

Audio is float in [-1, 1) (int16 input is divided by 32768). One second at 16 kHz gives
``1 + (16000 - 400) // 160 = 98`` frames. Everything is computed in float64 and returned as
float32, so the streaming front-end (:class:`LogMelStream`, audio in chunks of any size) yields
exactly the frames of the offline :func:`log_mel`.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from runtime.errors import UserError


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Front-end parameters. Models record these; a device must use the same ones."""

    sample_rate: int = 16000
    win: int = 400  # samples per frame (25 ms)
    hop: int = 160  # samples between frame starts (10 ms)
    n_fft: int = 512
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 8000.0
    log_floor: float = 1e-6

    def __post_init__(self):
        if not (0 < self.hop and 0 < self.win <= self.n_fft):
            raise UserError(f"invalid feature config {self}: need 0 < hop and 0 < win <= n_fft")
        if not (0 <= self.fmin < self.fmax <= self.sample_rate / 2):
            raise UserError(f"invalid feature config {self}: need 0 <= fmin < fmax <= sample_rate/2")
        if self.n_mels < 1:
            raise UserError(f"invalid feature config {self}: n_mels must be positive")

    def num_frames(self, num_samples: int) -> int:
        """Frames that ``num_samples`` samples give without padding."""
        return 0 if num_samples < self.win else 1 + (num_samples - self.win) // self.hop

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


DEFAULT = FeatureConfig()


def hz_to_mel(f):
    """HTK mel scale: 2595 * log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(config: FeatureConfig = DEFAULT) -> np.ndarray:
    """Triangular filters ``[n_fft // 2 + 1, n_mels]`` (float64, read-only), peak 1 at each centre.

    Filter ``m`` rises linearly from mel point ``m`` to ``m + 1`` and falls to ``m + 2``, the
    ``n_mels + 2`` points being equally spaced on the mel scale between fmin and fmax.
    """
    bins = np.fft.rfftfreq(config.n_fft, 1.0 / config.sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(config.fmin), hz_to_mel(config.fmax), config.n_mels + 2))
    lo, centre, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lo) / (centre - lo)
    falling = (hi - bins[None, :]) / (hi - centre)
    fb = np.maximum(0.0, np.minimum(rising, falling)).T
    fb.setflags(write=False)
    return fb


@functools.lru_cache(maxsize=8)
def hann_window(win: int) -> np.ndarray:
    """Periodic Hann window (the STFT convention): 0.5 - 0.5 cos(2 pi n / win)."""
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)
    w.setflags(write=False)
    return w


def as_audio(audio) -> np.ndarray:
    """Validate a mono signal and return it as float64 in [-1, 1) (int16 is scaled by 1/32768)."""
    a = np.asarray(audio)
    if a.ndim != 1:
        raise UserError(f"audio must be a 1-D mono signal, got shape {a.shape}: mix channels down first")
    if a.dtype == np.int16:
        return a.astype(np.float64) / 32768.0
    if not np.issubdtype(a.dtype, np.floating):
        raise UserError(f"audio must be float in [-1, 1) or int16, got dtype {a.dtype}: convert it "
                        f"(int16 samples as they are, others scaled to floats in [-1, 1))")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise UserError("audio contains NaN or infinite samples: clean the signal before computing features")
    return a


def frames_to_log_mel(frames: np.ndarray, config: FeatureConfig = DEFAULT) -> np.ndarray:
    """Log-mel of framed audio ``[n, win]`` (float64) -> ``[n, n_mels]`` float32. Row-independent."""
    spectrum = np.fft.rfft(frames * hann_window(config.win), n=config.n_fft, axis=-1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return np.log(power @ mel_filterbank(config) + config.log_floor).astype(np.float32)


def frame_signal(audio: np.ndarray, config: FeatureConfig = DEFAULT) -> np.ndarray:
    """Frames ``[num_frames, win]`` without padding (a strided view; do not write to it)."""
    n = config.num_frames(len(audio))
    if n == 0:
        return np.empty((0, config.win), dtype=audio.dtype)
    return np.lib.stride_tricks.sliding_window_view(audio, config.win)[::config.hop][:n]


def log_mel(audio, config: FeatureConfig = DEFAULT) -> np.ndarray:
    """Offline features of a whole signal: ``[num_frames, n_mels]`` float32 (1 s -> 98 x 40)."""
    return frames_to_log_mel(frame_signal(as_audio(audio), config), config)


class LogMelStream:
    """Streaming front-end: push audio chunks of any size, get the frames they complete.

    The frames equal :func:`log_mel` of the concatenated audio (same float64 math, row by row).
    Only the last ``win - 1`` samples (plus whatever a partial hop needs) are kept between calls.
    """

    def __init__(self, config: FeatureConfig = DEFAULT):
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget buffered audio; the next sample starts frame 0 again."""
        self._buf = np.zeros(0, dtype=np.float64)
        self.frames_emitted = 0

    def push(self, chunk) -> np.ndarray:
        """Add ``chunk`` (1-D float or int16); return the new frames ``[k, n_mels]`` (k may be 0)."""
        buf = np.concatenate([self._buf, as_audio(chunk)])
        n = self.config.num_frames(len(buf))
        out = frames_to_log_mel(frame_signal(buf, self.config), self.config)
        self._buf = buf[n * self.config.hop:]  # the next frame starts here
        self.frames_emitted += n
        return out

    __call__ = push
