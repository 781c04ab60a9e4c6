"""Read and write 16-bit PCM WAV files with the standard library (numpy for the samples).

Reading returns mono float32 in [-1, 1). A file at another sample rate is refused with a clear
error unless ``resample=True``, which converts it with :func:`resample` (band-limited FFT
resampling: the spectrum is truncated or zero-padded to the new length, exact for band-limited
periodic signals, a slight edge effect otherwise). Multi-channel files are averaged to mono.
Only 16-bit integer PCM is read; convert anything else with
``sox in.wav -r 16000 -c 1 -b 16 out.wav``.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from runtime.atomic import atomic_path
from runtime.errors import UserError

SAMPLE_RATE = 16000


class WrongSampleRate(UserError):
    """A WAV file at another sample rate than the one asked for (callers may add how else to fix it)."""


def _convert_hint(path, rate: int) -> str:
    return f"sox '{path}' -r {rate} -c 1 -b 16 out.wav"


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling by FFT: keep the spectrum below the lower Nyquist, change the length."""
    audio = np.asarray(audio, dtype=np.float64)
    if from_rate == to_rate or len(audio) == 0:
        return audio.astype(np.float32)
    n_out = int(round(len(audio) * to_rate / from_rate))
    spectrum = np.fft.rfft(audio)
    keep = min(len(spectrum), n_out // 2 + 1)
    out_spec = np.zeros(n_out // 2 + 1, dtype=complex)
    out_spec[:keep] = spectrum[:keep]
    return (np.fft.irfft(out_spec, n=n_out) * (n_out / len(audio))).astype(np.float32)


def _why_unreadable(e: Exception, otherwise: str) -> str:
    """Why ``wave`` could not open a file, in words (it raises a bare RuntimeError when a chunk
    declares more bytes than the file holds, e.g. a JUNK chunk of 0x7FFFFFF0 bytes)."""
    if isinstance(e, RuntimeError):
        return "a chunk declares more bytes than the file holds"
    return str(e) or otherwise


def read_wav(path, sample_rate: int | None = SAMPLE_RATE, resample_to_rate: bool = False) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV as mono float32 in [-1, 1); returns ``(audio, rate)``.

    ``sample_rate=None`` accepts any rate. Otherwise a different rate raises ``UserError`` unless
    ``resample_to_rate`` is set, in which case the audio is resampled to ``sample_rate``.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder: pass one WAV file")
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except FileNotFoundError:
        raise UserError(f"WAV file {path} not found") from None
    except (wave.Error, EOFError, OSError, RuntimeError) as e:
        why = _why_unreadable(e, "the file is empty" if path.stat().st_size == 0 else "it ends inside its header")
        raise UserError(f"{path} is not a readable PCM WAV file ({why}): convert it with {_convert_hint(path, sample_rate or SAMPLE_RATE)}") from None
    if width != 2:
        raise UserError(f"{path} has {8 * width}-bit samples, only 16-bit PCM is read: convert it with {_convert_hint(path, sample_rate or rate)}")
    usable = len(raw) // (2 * channels) * (2 * channels)
    if usable < len(raw) or usable < n * 2 * channels:
        raise UserError(f"{path} is truncated (header says {n} frames, data holds {len(raw) // (2 * channels)}): re-export the file")
    audio = np.frombuffer(raw[:usable], dtype="<i2").reshape(-1, channels).astype(np.float32) / 32768.0
    audio = audio.mean(axis=1) if channels > 1 else audio[:, 0]
    if sample_rate is not None and rate != sample_rate:
        if not resample_to_rate:
            raise WrongSampleRate(f"{path} is sampled at {rate} Hz, not {sample_rate} Hz: convert it with {_convert_hint(path, sample_rate)}")
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return np.ascontiguousarray(audio, dtype=np.float32), rate


def to_int16(audio) -> np.ndarray:
    """Float in [-1, 1) -> int16 (clipped, rounded)."""
    a = np.asarray(audio)
    if a.dtype == np.int16:
        return a
    return np.clip(np.round(np.asarray(a, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def wav_bytes(audio, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A complete mono 16-bit PCM WAV file in memory."""
    import io
    a = np.asarray(audio)
    if a.ndim != 1:
        raise UserError(f"only mono audio is written, got shape {a.shape}")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(to_int16(a).astype("<i2").tobytes())
    return buf.getvalue()


def write_wav(path, audio, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono 16-bit PCM atomically (temporary name + rename)."""
    path = Path(path)
    data = wav_bytes(audio, sample_rate)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def parse_wav_bytes(data: bytes, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Like :func:`read_wav` for WAV bytes in memory (e.g. a synthesiser's stdout); any rate."""
    import io
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError, RuntimeError) as e:
        raise UserError(f"not a readable PCM WAV stream ({_why_unreadable(e, 'it ends inside its header')}): "
                        f"convert it to 16-bit PCM WAV (e.g. sox in.wav -b 16 -e signed-integer out.wav)") from None
    if width != 2:
        raise UserError(f"WAV stream has {8 * width}-bit samples, only 16-bit PCM is read: convert it "
                        f"(e.g. sox in.wav -b 16 -e signed-integer out.wav)")
    raw = raw[:len(raw) // (2 * channels) * (2 * channels)]
    audio = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).astype(np.float32).mean(axis=1) / 32768.0
    if sample_rate is not None and rate != sample_rate:
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return audio.astype(np.float32), rate
