"""``kws``: keyword spotting on SYNTHETIC speech (espeak-ng, plus flite where installed).

12 classes: yes no up down left right on off stop go, ``_unknown_`` (other words) and
``_silence_`` (background noise only). Each example is a 1 s clip at 16 kHz: one word spoken by
a random voice / accent / speed / pitch, at a random level and a random offset, over background
noise (white, pink, brown, mains hum or modulated "babble-like" noise) at a random SNR; then the
log-mel features of :mod:`runtime.features` with a 20 ms hop (49 frames x 40 bands).

Splits hold out VOICES (see :mod:`training.data.speech_synth`): every espeak-ng voice variant and
flite speaker belongs to exactly one of train / val / test (assigned by a hash of its name, so the
assignment does not move with the seed); the accents are shared. Test accuracy is therefore on
voices the model never heard - synthetic ones, which is what ``info["synthetic"]`` says.

Generation is seeded, runs at most 2 synthesiser processes at a time, and is cached under
``cache_dir`` as ``kws-<hash of every generation parameter>.npz`` (written atomically).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from runtime.atomic import atomic_path
from runtime.errors import UserError
from runtime.features import FeatureConfig, log_mel
from runtime.npz import NpzUnreadable, read_npz
from training.data.base import SequenceData, check_fractions, check_option, check_range, clip_samples, feature_config
from training.data import speech_synth as synth

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
CLASS_NAMES = (*KEYWORDS, UNKNOWN, SILENCE)
# Other words, all spoken as "_unknown_": the Speech Commands auxiliary words plus a few common
# ones. No homophone of a keyword ("know", "write") and no near-miss ("goal", "yet", "top"): those
# would make labels ambiguous for a synthesiser that pronounces every word the same way.
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin",
                 "nine", "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero",
                 "forward", "backward", "follow", "learn", "visual", "hello", "computer", "music",
                 "water", "green", "window", "table", "paper", "morning", "number", "sister")
SPLITS = ("train", "val", "test")
CODE_VERSION = 1  # bump when the generation code changes what it produces


@dataclasses.dataclass(frozen=True)
class KwsParams:
    """Every parameter that shapes the generated data (all of them go into the cache key)."""

    per_class: tuple[int, int, int] = (800, 80, 120)  # clips per class in train, val, test
    engines: tuple[str, ...] = ("espeak", "flite")
    val_fraction: float = 0.15  # share of voices held out for validation
    test_fraction: float = 0.20  # share of voices held out for test
    flite_share: float = 0.2  # share of spoken clips said by flite voices (where a split has some)
    max_voices: int = 0  # >0: keep only this many voices per split (fast tests)
    speed: tuple[float, float] = (0.8, 1.3)  # speaking-rate factor
    pitch: tuple[int, int] = (20, 80)  # espeak pitch 0..99
    stretch: tuple[float, float] = (0.92, 1.08)  # resampling factor (pitch + tempo) after synthesis
    speech_dbfs: tuple[float, float] = (-35.0, -12.0)  # RMS level of the word
    snr_db: tuple[float, float] = (5.0, 30.0)  # word RMS over noise RMS
    silence_dbfs: tuple[float, float] = (-75.0, -25.0)  # noise level of _silence_ clips
    clip_seconds: float = 1.0
    # 20 ms hop: 49 frames per second instead of 98, same accuracy, half the recurrent steps.
    features: tuple = tuple(FeatureConfig(hop=320).to_dict().items())

    @property
    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(**dict(self.features))

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()} | {
            "features": dict(self.features)}


PRESETS = {
    "full": {},
    # For tests: a few voices, a handful of clips per class, espeak only (~100 clips, ~2 s).
    "tiny": {"per_class": (4, 2, 2), "engines": ("espeak",), "max_voices": 3},
}


def make_params(subset: str = "full", **overrides) -> KwsParams:
    if subset not in PRESETS:
        raise UserError(f"unknown kws subset {subset!r}: use one of {', '.join(PRESETS)}")
    values = {**PRESETS[subset], **overrides}
    fields = {f.name for f in dataclasses.fields(KwsParams)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise UserError(f"unknown kws option(s) {', '.join(unknown)}: valid options are subset, workers, progress, {', '.join(sorted(fields))}")
    defaults = KwsParams()
    values.update({k: check_option("task kws", k, v, getattr(defaults, k))
                   for k, v in overrides.items() if k != "features"})
    if "features" in overrides:
        values["features"] = tuple(feature_config("task kws", overrides["features"], defaults.feature_config).to_dict().items())
    for k, v in values.items():
        if isinstance(v, list):
            values[k] = tuple(v)
    p = KwsParams(**values)
    if any(n < 1 for n in p.per_class) or len(p.per_class) != 3:
        raise UserError(f"kws per_class must be three positive counts (train, val, test), got {p.per_class}")
    check_fractions("task kws", p.val_fraction, p.test_fraction)
    for name, ok, want in (("speed", lambda lo, hi: 0 < lo <= hi, "positive factors with low <= high"),
                           ("pitch", lambda lo, hi: 0 <= lo < hi <= 99, "espeak pitches from 0 to 99 with low < high"),
                           ("stretch", lambda lo, hi: 0 < lo <= hi, "positive factors with low <= high"),
                           ("speech_dbfs", lambda lo, hi: lo <= hi, "levels in dBFS with low <= high"),
                           ("snr_db", lambda lo, hi: lo <= hi, "SNRs in dB with low <= high"),
                           ("silence_dbfs", lambda lo, hi: lo <= hi, "levels in dBFS with low <= high")):
        value = getattr(p, name)  # a range that clips are drawn from
        check_range("task kws", name, list(value), len(value) == 2 and ok(*value),
                    f"a range [low, high] of {want}, e.g. {list(getattr(KwsParams, name))}")
    clip_samples("task kws", p.clip_seconds, p.feature_config)
    return p


# -- voices and their split -------------------------------------------------------------------
def split_of(voice: synth.Voice, params: KwsParams) -> str:
    """The split a voice belongs to, from a hash of its speaker id (stable across seeds)."""
    u = int(hashlib.sha256(voice.id.encode()).hexdigest()[:8], 16) / 16 ** 8
    return "test" if u < params.test_fraction else "val" if u < params.test_fraction + params.val_fraction else "train"


def voices_by_split(params: KwsParams | None = None) -> dict[str, list[synth.Voice]]:
    """Installed voices grouped by split; each split gets at least one espeak voice."""
    params = params or KwsParams()
    synth.require_espeak()
    groups = {s: [] for s in SPLITS}
    for v in synth.available_voices(params.engines):
        groups[split_of(v, params)].append(v)
    for s in SPLITS:
        if not any(v.engine == "espeak" for v in groups[s]):
            raise UserError(f"too few espeak-ng voices installed to hold some out for {s}: reinstall espeak-ng-data")
        if params.max_voices > 0:
            groups[s] = groups[s][:params.max_voices]
    return groups


# -- one clip ---------------------------------------------------------------------------------
def place_in_clip(rng: np.random.Generator, word: np.ndarray | None, params: KwsParams) -> np.ndarray:
    """Mix a word (or nothing, for silence) into a noisy clip; returns float32 audio in [-1, 1]."""
    n = int(round(params.clip_seconds * synth.SAMPLE_RATE))
    noise = synth.background_noise(rng, n)
    if word is None or len(word) == 0:
        clip = noise * 10 ** (rng.uniform(*params.silence_dbfs) / 20)
    else:
        word = word[:n].astype(np.float64)
        word = word * (10 ** (rng.uniform(*params.speech_dbfs) / 20) / synth.rms(word))
        offset = int(rng.integers(0, n - len(word) + 1))
        clip = noise * (synth.rms(word) / 10 ** (rng.uniform(*params.snr_db) / 20))
        clip[offset:offset + len(word)] += word
    return np.clip(clip, -1.0, 32767 / 32768).astype(np.float32)


def _params_from_json(d: dict) -> KwsParams:
    return KwsParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
                     | {"features": tuple(d["features"].items())})


def render(session: dict) -> list[np.ndarray]:
    """Synthesise and featurise one session (runs in a worker): one ``[frames, n_mels]`` per clip.

    A session is one synthesiser call: up to ``WORDS_PER_CALL`` words with one voice, accent,
    speed and pitch (or only silence clips). Each clip then gets its own stretch, level, offset,
    noise and SNR from its own seed.
    """
    params = _params_from_json(session["params"])
    if session["voice"] is None:
        words = [None] * len(session["seeds"])
    else:
        words = synth.synthesize_many(synth.Voice(*session["voice"]), session["words"], session["dialect"],
                                      session["speed"], session["pitch"])
    out = []
    for word, factor, seed in zip(words, session["stretch"], session["seeds"]):
        rng = np.random.default_rng(seed)
        if word is not None:
            if len(word) < synth.SAMPLE_RATE // 20:
                raise UserError(f"{session['voice'][0]} voice {session['voice'][1]} produced no audible speech "
                                f"for {session['words']}: check the synthesiser installation")
            word = synth.stretch(word, factor)
        out.append(log_mel(place_in_clip(rng, word, params), params.feature_config))
    return out


WORDS_PER_CALL = 8


def plan(params: KwsParams, seed: int, groups: dict[str, list[synth.Voice]]) -> list[dict]:
    """The synthesiser sessions to run, fully determined by ``params`` and ``seed``."""
    rng = np.random.default_rng([seed, 0x6B7773])
    p_json = params.to_json()
    # flite says one word per call; pick flite sessions so that ~flite_share of the CLIPS are flite.
    f, k = params.flite_share, WORDS_PER_CALL
    p_flite = f * k / (1 - f + f * k) if f < 1 else 1.0
    sessions = []
    for split, count in zip(SPLITS, params.per_class):
        espeak = [v for v in groups[split] if v.engine == "espeak"]
        flite = [v for v in groups[split] if v.engine == "flite"]
        labels = rng.permutation(np.repeat(np.arange(len(CLASS_NAMES)), count))
        spoken = [int(x) for x in labels if CLASS_NAMES[x] != SILENCE]
        silent = [int(x) for x in labels if CLASS_NAMES[x] == SILENCE]
        i = 0
        while i < len(spoken):
            use_flite = bool(flite) and rng.random() < p_flite
            pool = flite if use_flite else espeak
            chunk = spoken[i:i + (1 if use_flite else k)]
            i += len(chunk)
            voice = pool[int(rng.integers(len(pool)))]
            words = [CLASS_NAMES[x] if CLASS_NAMES[x] != UNKNOWN else UNKNOWN_WORDS[int(rng.integers(len(UNKNOWN_WORDS)))]
                     for x in chunk]
            sessions.append({
                "split": split, "labels": chunk, "words": words, "voice": dataclasses.astuple(voice),
                "dialect": synth.ESPEAK_DIALECTS[int(rng.integers(len(synth.ESPEAK_DIALECTS)))],
                "speed": float(rng.uniform(*params.speed)), "pitch": int(rng.integers(*params.pitch)),
                "stretch": [float(x) for x in rng.uniform(*params.stretch, len(chunk))],
                "seeds": [int(x) for x in rng.integers(2 ** 63, size=len(chunk))], "params": p_json})
        for j in range(0, len(silent), k):
            chunk = silent[j:j + k]
            sessions.append({"split": split, "labels": chunk, "words": [None] * len(chunk), "voice": None,
                             "dialect": None, "speed": 1.0, "pitch": 50, "stretch": [1.0] * len(chunk),
                             "seeds": [int(x) for x in rng.integers(2 ** 63, size=len(chunk))], "params": p_json})
    return sessions


def run_sessions(sessions: list[dict], workers: int = 2, progress: bool = True) -> list[list[np.ndarray]]:
    """Render every session, in order, with at most ``workers`` (<= 2) synthesisers at a time.

    Threads, not processes: the time goes to the synthesiser subprocesses and to numpy, both of
    which run outside the GIL, and threads need no ``if __name__ == "__main__"`` guard in the
    caller's script nor care about the parent's torch thread pools.
    """
    from concurrent.futures import ThreadPoolExecutor
    workers = max(1, min(2, int(workers)))
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=sum(len(s["labels"]) for s in sessions), desc="kws: synthesising",
                       unit="clip", dynamic_ncols=True, file=sys.stderr)
        except ImportError:
            pass
    out = []
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for feats in pool.map(render, sessions):
                out.append(feats)
                if bar is not None:
                    bar.update(len(feats))
    finally:
        if bar is not None:
            bar.close()
    return out


# -- the dataset ------------------------------------------------------------------------------
def cache_key(params: KwsParams, seed: int, groups: dict) -> str:
    blob = json.dumps({"version": CODE_VERSION, "seed": seed, "params": params.to_json(),
                       "voices": {s: [dataclasses.astuple(v) for v in vs] for s, vs in groups.items()},
                       "engines": synth.engine_versions(), "keywords": CLASS_NAMES,
                       "unknown_words": UNKNOWN_WORDS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def generate(params: KwsParams, seed: int, groups: dict, workers: int = 2, progress: bool = True) -> dict:
    """All splits as arrays: X_*, y_*, and per clip the voice id and word said (for checks)."""
    sessions = plan(params, seed, groups)
    feats = run_sessions(sessions, workers, progress)
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        rows = [(f, lab, s["voice"], w) for s, fs in zip(sessions, feats) if s["split"] == split
                for f, lab, w in zip(fs, s["labels"], s["words"])]
        arrays[f"X_{split}"] = np.stack([r[0] for r in rows]).astype(np.float32)
        arrays[f"y_{split}"] = np.array([r[1] for r in rows], dtype=np.int64)
        arrays[f"voice_{split}"] = np.array([synth.Voice(*r[2]).id if r[2] else "" for r in rows])
        arrays[f"word_{split}"] = np.array([r[3] or "" for r in rows])
    return arrays


CACHE_ARRAYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")


def load_kws(cache_dir: str | Path = ".cache", seed: int = 0, subset: str = "full", workers: int = 2,
             progress: bool = True, **options) -> SequenceData:
    """The kws task (see the module docstring). ``subset="tiny"`` is a ~100-clip set for tests;
    any :class:`KwsParams` field may be overridden as a keyword option."""
    params = make_params(subset, **options)
    groups = voices_by_split(params)
    key = cache_key(params, seed, groups)
    path = Path(cache_dir) / f"kws-{key}.npz"
    arrays = None
    if path.is_file():
        try:
            arrays = read_npz(path)
        except NpzUnreadable as e:
            print(f"warning: kws cache {path} {e}; regenerating", file=sys.stderr)
        missing = [k for k in CACHE_ARRAYS if arrays is not None and k not in arrays]
        if missing:
            print(f"warning: kws cache {path} lacks {', '.join(missing)}; regenerating", file=sys.stderr)
            arrays = None
    if arrays is None:
        arrays = generate(params, seed, groups, workers, progress)
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, **arrays)
        except OSError as e:
            raise UserError(f"cannot write the kws cache {path}: {e.strerror}; choose another cache folder") from None
    engines = synth.engine_versions()
    info = {
        "synthetic": True,
        "source": "synthetic speech (" + ", ".join(
            f"{name} {engines[name]}" for name in ("espeak-ng", "flite")
            if any(v.engine == name.split("-")[0] for vs in groups.values() for v in vs)) + ")",
        "split_by": "voice (espeak-ng variant / flite speaker); accents shared",
        "voices": {s: sorted({v.id for v in groups[s]}) for s in SPLITS},
        "features": params.feature_config.to_dict(),
        "sample_rate_hz": synth.SAMPLE_RATE, "clip_seconds": params.clip_seconds,
        "subset": subset, "params": params.to_json(), "seed": seed, "cache_file": str(path),
    }
    return SequenceData("kws", list(CLASS_NAMES),
                        *(arrays[k] for k in CACHE_ARRAYS), info=info)
