"""A long test recording for keyword spotting on a stream (the ``listen`` app's acceptance).

:func:`make_keyword_stream` writes a 16 kHz mono WAV that strings synthesised keywords, spoken
only by voices of the kws TEST split (never heard in training), with pauses between them. The
pauses alternate between near silence and background noise (the kinds of
:mod:`training.data.speech_synth`); some pauses hold a non-keyword ("_unknown_" distractor).
It returns the ground truth ``[(label, start_s), ...]`` for the keywords and writes a sidecar
``<wav>.json`` listing every word said (keywords and distractors) with start/end times, voice and
word, so a detector can be scored: a keyword counts as found when the detector reports it
between its start and ``end_s + tolerance``; any other report is a false alarm.

    python -m training.data.kws_stream stream.wav --keywords 30 --seed 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from runtime.atomic import write_json
from runtime.errors import UserError
from runtime.wav import write_wav
from training.data import speech_synth as synth
from training.data.kws import KEYWORDS, UNKNOWN_WORDS, KwsParams, voices_by_split

RATE = synth.SAMPLE_RATE


def make_keyword_stream(path: str | Path, seed: int = 0, n_keywords: int = 30, distractors: float = 0.3,
                        gap_s: tuple[float, float] = (1.0, 2.5), speech_dbfs: tuple[float, float] = (-26.0, -16.0),
                        snr_db: tuple[float, float] = (10.0, 25.0), quiet_dbfs: float = -70.0,
                        speed: tuple[float, float] = (0.85, 1.2)) -> list[tuple[str, float]]:
    """Write the test stream to ``path`` (+ ``path.json``); returns ``[(keyword, start_s), ...]``.

    ``n_keywords`` keywords cycle through all ten (each appears about equally often);
    ``distractors`` is the chance that a pause also holds an unknown word. Every gap is at least
    ``gap_s[0]`` seconds, so a 1 s detector window never holds two words.
    """
    if n_keywords < 1:
        raise UserError(f"n_keywords must be positive, got {n_keywords}")
    rng = np.random.default_rng([seed, 0x73747265])
    voices = voices_by_split(KwsParams())["test"]
    words: list[tuple[str, str]] = []  # (label, word)
    order = [KEYWORDS[i] for i in rng.permutation(len(KEYWORDS))]
    for i in range(n_keywords):
        if rng.random() < distractors:
            words.append(("_unknown_", UNKNOWN_WORDS[int(rng.integers(len(UNKNOWN_WORDS)))]))
        kw = order[i % len(order)]
        words.append((kw, kw))

    # Timeline: a pause, then a word, ... then a last pause.
    events, t = [], 0.0
    clips = []
    for label, word in words:
        voice = voices[int(rng.integers(len(voices)))]
        dialect = synth.ESPEAK_DIALECTS[int(rng.integers(len(synth.ESPEAK_DIALECTS)))]
        audio = synth.synthesize(voice, word, dialect, float(rng.uniform(*speed)), int(rng.integers(30, 70)))
        audio = audio[:RATE].astype(np.float64)
        level = 10 ** (rng.uniform(*speech_dbfs) / 20)
        audio *= level / synth.rms(audio)
        t += float(rng.uniform(*gap_s))
        start = int(round(t * RATE))
        clips.append((start, audio))
        events.append({"label": label, "word": word, "voice": voice.id, "dialect": dialect,
                       "start_s": round(start / RATE, 4), "end_s": round((start + len(audio)) / RATE, 4),
                       "speech_dbfs": round(20 * np.log10(level), 1)})
        t = (start + len(audio)) / RATE
    total = int(round((t + float(rng.uniform(*gap_s))) * RATE))

    # Background: one segment per word (from the middle of the pause before it to the middle of
    # the pause after it), each either near silence or noise of a random kind at a random SNR.
    bounds = [0] + [(clips[i][0] + len(clips[i][1]) + clips[i + 1][0]) // 2 for i in range(len(clips) - 1)] + [total]
    track = np.zeros(total)
    for i, (start, audio) in enumerate(clips):
        lo, hi = bounds[i], bounds[i + 1]
        if rng.random() < 0.35:
            kind, noise_rms = "quiet", 10 ** (quiet_dbfs / 20)
            noise = synth.colored_noise(rng, hi - lo, 1.0)
        else:
            kind = synth.NOISE_KINDS[int(rng.integers(len(synth.NOISE_KINDS)))]
            noise_rms = synth.rms(audio) / 10 ** (rng.uniform(*snr_db) / 20)
            noise = synth.background_noise(rng, hi - lo, kind)
        track[lo:hi] += noise * noise_rms
        track[start:start + len(audio)] += audio
        events[i]["background"] = kind
        events[i]["snr_db"] = None if kind == "quiet" else round(20 * np.log10(synth.rms(audio) / noise_rms), 1)
    path = Path(path)
    write_wav(path, np.clip(track, -1, 32767 / 32768), RATE)
    truth = [(e["label"], e["start_s"]) for e in events if e["label"] != "_unknown_"]
    write_json(path.with_name(path.name + ".json"), {
        "wav": path.name, "sample_rate": RATE, "duration_s": round(total / RATE, 3), "seed": seed,
        "synthetic": True, "voices": "kws test split (never used in training)",
        "keywords": [{"label": lab, "start_s": s} for lab, s in truth], "events": events})
    return truth


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.data.kws_stream", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="WAV file to write (ground truth goes to OUT.json)")
    p.add_argument("--keywords", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--distractors", type=float, default=0.3, help="chance of an unknown word in a pause")
    args = p.parse_args(argv)
    try:
        truth = make_keyword_stream(args.out, args.seed, args.keywords, args.distractors)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(truth)} keywords, ground truth in {args.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
