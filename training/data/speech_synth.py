"""Synthetic speech: words spoken by espeak-ng (and flite where installed) as 16 kHz float audio.

A *voice* is what the dataset holds out between splits: an espeak-ng voice variant (``+Alex``,
``+f3``, ... a timbre; it is combined with any of several English accents) or a flite speaker
(``kal`` and ``kal16`` are the same speaker, so they count as one). The synthesisers run as
subprocesses writing WAV to stdout; espeak-ng's 22.05 kHz output is resampled to 16 kHz with
the FFT method of :func:`runtime.wav.resample`.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import subprocess

import numpy as np

from runtime.errors import MissingDependency, UserError
from runtime.wav import parse_wav_bytes, resample

SAMPLE_RATE = 16000

# English accents espeak-ng ships (all installed with the espeak-ng-data package).
ESPEAK_DIALECTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                   "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# flite voice file -> speaker. awb_time is a limited-domain voice (it can only say the time).
FLITE_SPEAKERS = {"kal": "kal", "kal16": "kal", "awb": "awb", "rms": "rms", "slt": "slt"}


@dataclasses.dataclass(frozen=True)
class Voice:
    engine: str  # "espeak" | "flite"
    name: str  # espeak variant ("Alex") or flite voice file ("kal16")
    speaker: str  # the unit held out between splits

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.speaker}"


def require_espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise MissingDependency("espeak-ng (the speech synthesiser the kws task uses)", "apt-get install espeak-ng")
    return path


@functools.lru_cache(maxsize=1)
def espeak_variants() -> tuple[str, ...]:
    """Voice variants installed with espeak-ng (``espeak-ng --voices=variant``), sorted."""
    out = subprocess.run([require_espeak(), "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[4].startswith("!v/"):
            names.add(cols[4][3:])
    if not names:
        raise UserError("espeak-ng lists no voice variants: reinstall it with `apt-get install --reinstall espeak-ng-data`")
    return tuple(sorted(names))


@functools.lru_cache(maxsize=1)
def flite_voices() -> tuple[str, ...]:
    """flite voices installed (``flite -lv``) that can say any word; empty without flite."""
    exe = shutil.which("flite")
    if exe is None:
        return ()
    out = subprocess.run([exe, "-lv"], capture_output=True, text=True).stdout
    listed = out.split(":", 1)[-1].split()
    return tuple(sorted(v for v in listed if v in FLITE_SPEAKERS))


def available_voices(engines=("espeak", "flite")) -> list[Voice]:
    voices = []
    if "espeak" in engines:
        voices += [Voice("espeak", v, v) for v in espeak_variants()]
    if "flite" in engines:
        voices += [Voice("flite", v, FLITE_SPEAKERS[v]) for v in flite_voices()]
    return voices


def engine_versions() -> dict:
    """Synthesiser versions (``{"espeak-ng": "1.51", "flite": "2.2-current Sep 2018"}``), part of the cache key."""
    import re
    text = subprocess.run([require_espeak(), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"text-to-speech:\s*(\S+)", text)
    versions = {"espeak-ng": m.group(1) if m else text.strip()[:80]}
    if shutil.which("flite"):
        text = subprocess.run(["flite", "--version"], capture_output=True, text=True).stdout
        m = re.search(r"version:\s*flite-(.+?)\s*\(", text)
        versions["flite"] = m.group(1) if m else text.strip()[-80:]
    return versions


def trim_silence(audio: np.ndarray, threshold_db: float = -35.0, frame: int = 160) -> np.ndarray:
    """Cut leading/trailing frames quieter than ``threshold_db`` below the loudest 10 ms frame."""
    n = len(audio) // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[:n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    if len(loud) == 0:
        return audio[:0]
    return audio[max(0, loud[0] - 1) * frame:min(len(audio), (loud[-1] + 2) * frame)]


def _check_word(word: str) -> None:
    if not word or not word.replace("'", "").replace(" ", "").isalpha():
        raise UserError(f"cannot synthesise {word!r}: use plain words (letters only)")


def _run(cmd: list[str], voice: Voice, what: str) -> bytes:
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        raise UserError(f"{voice.engine} failed to say {what!r} with voice {voice.name}: "
                        f"{proc.stderr.decode(errors='replace').strip()[:200] or 'no audio'}")
    return proc.stdout


def _espeak_cmd(voice: Voice, dialect: str, speed: float, pitch: int) -> list[str]:
    return [require_espeak(), "-v", f"{dialect}+{voice.name}", "-s", str(int(round(175 * speed))),
            "-p", str(int(pitch)), "--stdout"]


def synthesize(voice: Voice, word: str, dialect: str = "en-us", speed: float = 1.0, pitch: int = 50) -> np.ndarray:
    """Speak ``word``; returns trimmed mono float32 audio at 16 kHz.

    ``speed`` scales the speaking rate (espeak: 175 words/min x speed; flite: duration stretch
    1/speed); ``pitch`` is espeak's 0..99 pitch (flite keeps its own).
    """
    _check_word(word)
    if voice.engine == "espeak":
        cmd = [*_espeak_cmd(voice, dialect, speed, pitch), word]
    elif voice.engine == "flite":
        cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={1.0 / speed:.3f}",
               "-t", word, "-o", "/dev/stdout"]
    else:
        raise UserError(f"unknown speech engine {voice.engine!r}: use espeak or flite")
    audio, _ = parse_wav_bytes(_run(cmd, voice, word), SAMPLE_RATE)
    return trim_silence(audio)


def split_on_silence(audio: np.ndarray, rate: int, min_gap_s: float = 0.3, threshold_db: float = -65.0) -> list[np.ndarray]:
    """Cut audio at pauses: runs of 10 ms frames quieter than ``threshold_db`` below the loudest
    frame lasting at least ``min_gap_s`` (espeak's breaks are digital silence or a faint hum)."""
    frame = max(1, rate // 100)
    n = len(audio) // frame
    if n == 0:
        return [audio] if len(audio) else []
    energy = np.sqrt(np.mean(audio[:n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1) + 1e-20)
    quiet = np.r_[False, energy < energy.max() * 10 ** (threshold_db / 20), False]
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    gaps = [(s, e) for s, e in zip(edges[::2], edges[1::2]) if (e - s) * frame >= min_gap_s * rate]
    pieces, pos = [], 0
    for s, e in gaps:
        pieces.append(audio[pos:s * frame])
        pos = e * frame
    pieces.append(audio[pos:])
    return [p for p in pieces if len(p) >= frame]


def synthesize_many(voice: Voice, words: list[str], dialect: str = "en-us", speed: float = 1.0,
                    pitch: int = 50) -> list[np.ndarray]:
    """Speak several words with one voice setting; one trimmed 16 kHz array per word.

    espeak-ng says them in ONE call, separated by 700 ms SSML breaks, and the audio is cut at its
    pauses (>= 300 ms below -65 dB; stop-consonant closures inside words are far shorter).
    That saves a process start per word (~10 ms). If the cut does not give one piece per word,
    the words are synthesised one by one instead. flite is always called once per word.
    """
    for w in words:
        _check_word(w)
    if voice.engine != "espeak" or len(words) == 1:
        return [synthesize(voice, w, dialect, speed, pitch) for w in words]
    ssml = "<speak>" + "<break time='700ms'/>".join(words) + "</speak>"
    audio, rate = parse_wav_bytes(_run([*_espeak_cmd(voice, dialect, speed, pitch), "-m", ssml], voice, " ".join(words)))
    pieces = split_on_silence(audio, rate)
    if len(pieces) != len(words):
        return [synthesize(voice, w, dialect, speed, pitch) for w in words]
    return [trim_silence(resample(p, rate, SAMPLE_RATE)) for p in pieces]


# -- background noise ------------------------------------------------------------------------
NOISE_KINDS = ("white", "pink", "brown", "hum", "babble-like")


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1 / f^exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    x = np.fft.irfft(spec / f ** (exponent / 2), n=n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def background_noise(rng: np.random.Generator, n: int, kind: str | None = None) -> np.ndarray:
    """One of NOISE_KINDS (random when None), unit RMS, float64.

    ``hum``: mains hum (50 or 60 Hz with harmonics) over faint pink noise; ``babble-like``:
    pink noise amplitude-modulated at syllable rate (3-8 Hz), a cheap stand-in for distant talk.
    """
    kind = kind or NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = colored_noise(rng, n, rng.uniform(0.7, 1.3))
    elif kind == "brown":
        x = colored_noise(rng, n, rng.uniform(1.6, 2.0))
    elif kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        f0 = (50.0, 60.0)[int(rng.integers(2))]
        x = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) for k in range(1, 6))
        x = x + 0.3 * colored_noise(rng, n, 1.0)
    elif kind == "babble-like":
        t = np.arange(n) / SAMPLE_RATE
        env = 1 + 0.8 * np.sin(2 * np.pi * rng.uniform(3, 8) * t + rng.uniform(0, 2 * np.pi))
        x = colored_noise(rng, n, rng.uniform(0.5, 1.2)) * env
    else:
        raise UserError(f"unknown noise kind {kind!r}: use one of {', '.join(NOISE_KINDS)}")
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-20))


def stretch(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch and tempo together) by linear interpolation."""
    if abs(factor - 1.0) < 1e-6 or len(audio) < 2:
        return audio
    n_out = max(1, int(round(len(audio) / factor)))
    return np.interp(np.arange(n_out) * factor, np.arange(len(audio)), audio).astype(np.float32)
