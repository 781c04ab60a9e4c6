"""``python -m runtime listen --model M (--wav FILE | --mic)``: keyword spotting on a stream of audio.

Audio goes in chunks (``--chunk-ms``, as a microphone delivers it) through the streaming log-mel
front-end (``runtime.features.LogMelStream``, identical to the training features), then through
the streaming model as staggered windows of the model's training length (1 s clips by default),
posterior smoothing and a threshold
(``runtime.detect``). Each detected keyword is printed with its time and confidence. ``--mic``
records with ``arecord`` (alsa-utils) when it is installed.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import numpy as np

from runtime.apps.common import add_model_arguments, load_model, print_json, window_of
from runtime.detect import Detector, WindowedStream
from runtime.errors import UserError

BACKGROUND = ("_silence_", "_unknown_")


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="artifact folder or model file of a kws model")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--wav", help="16-bit PCM WAV file")
    src.add_argument("--mic", action="store_true", help="record from the default ALSA device (arecord)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this much audio (--mic: default forever)")
    p.add_argument("--chunk-ms", type=float, default=100.0, help="audio chunk size fed at a time (default 100 ms)")
    p.add_argument("--lanes", type=int, default=4, help="staggered windows (the model's training length): a decision every window/lanes frames")
    p.add_argument("--threshold", type=float, default=0.7, help="smoothed posterior needed to report a keyword")
    p.add_argument("--smooth", type=int, default=2, help="posteriors averaged (moving average)")
    p.add_argument("--refractory-ms", type=float, default=1000.0, help="quiet time before the same keyword again")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per detection")
    p.add_argument("--truth", default=None, help="ground-truth JSON (training.data.kws_stream sidecar): "
                   "print detection rate and false alarms per minute at the end")
    p.add_argument("--tolerance-ms", type=float, default=1000.0, help="with --truth: how long after a word "
                   "ends its report still counts")
    add_model_arguments(p)


def feature_config(model):
    """(front-end, recorded): the one the model was trained with (manifest, else checkpoint metadata;
    recorded True), else the defaults (False)."""
    from runtime.features import FeatureConfig
    sources = []
    if model.manifest is not None:
        d = model.manifest.data
        sources += [d.get("features"), (d.get("dataset") or {}).get("features"), (d.get("preprocess") or {}).get("features")]
    meta = getattr(getattr(model.sequence_graph, "backend", None), "meta", None) or {}
    sources.append((meta.get("dataset") or {}).get("features"))
    for s in sources:
        if s:
            return FeatureConfig.from_dict(s), True
    return FeatureConfig(), False


def wav_chunks(path, rate: int, chunk: int, seconds: float | None):
    from runtime.wav import read_wav
    audio, _ = read_wav(path, sample_rate=rate)
    if seconds:
        audio = audio[: int(seconds * rate)]
    for i in range(0, len(audio), chunk):
        yield audio[i:i + chunk]


def arecord() -> str:
    exe = shutil.which("arecord")
    if exe is None:
        raise UserError("--mic needs `arecord` (install alsa-utils: sudo apt install alsa-utils), or use --wav FILE")
    return exe


def mic_chunks(rate: int, chunk: int, seconds: float | None):
    exe = arecord()
    cmd = [exe, "-q", "-t", "raw", "-f", "S16_LE", "-c", "1", "-r", str(rate)]
    if seconds:
        cmd += ["-d", str(max(1, int(np.ceil(seconds))))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    left = int(seconds * rate) if seconds else None  # arecord -d takes whole seconds: cut at --seconds here
    try:
        while left is None or left > 0:
            data = proc.stdout.read(2 * (chunk if left is None else min(chunk, left)))
            if not data:
                break
            audio = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
            left = None if left is None else left - len(audio)
            yield audio
    finally:
        proc.terminate()
        proc.wait()
        if proc.returncode not in (0, -15) and proc.stderr is not None:
            err = proc.stderr.read().decode(errors="replace").strip().splitlines()
            if err:
                raise UserError(f"arecord failed: {err[-1]} (check the microphone with `arecord -l`)")


def check_options(args) -> None:
    """Refuse option values that would silently cut the audio short or fail deep inside (NaN, inf,
    negative durations) before anything is loaded."""
    for flag, value, positive in (("--seconds", args.seconds, True), ("--chunk-ms", args.chunk_ms, True),
                                  ("--refractory-ms", args.refractory_ms, False),
                                  ("--tolerance-ms", args.tolerance_ms, False)):
        if value is not None and not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
            raise UserError(f"{flag} must be a finite number {'> 0' if positive else '>= 0'}, got {value}")


def run(args) -> int:
    from runtime.features import LogMelStream
    check_options(args)
    if args.mic:
        arecord()  # fail before loading anything
    model = load_model(args.model, args)
    cfg, recorded = feature_config(model)
    if model.channels != cfg.n_mels:
        raise UserError(f"{args.model} takes {model.channels} channels but the audio front-end gives {cfg.n_mels} "
                        f"log-mel bands: is this a kws model?")
    # the window the model was trained on (1 s clips by default, data.clip_seconds otherwise); with
    # no recorded front-end the defaults are a guess, which holds only for a default 1 s window
    window = window_of(model) or cfg.num_frames(cfg.sample_rate)
    if not recorded and window != cfg.num_frames(cfg.sample_rate):
        raise UserError(f"{args.model} takes {window}-frame windows and records no audio front-end, whose defaults "
                        f"(hop {cfg.hop} samples) give {cfg.num_frames(cfg.sample_rate)} frames per 1 s: re-export it "
                        f"from its checkpoint with this version (python -m export --checkpoint RUN)")
    decoder = WindowedStream(model, window, args.lanes)
    frame_s = cfg.hop / cfg.sample_rate
    ignore = [c for c in BACKGROUND if c in model.class_names]
    detector = Detector(model.class_names, args.threshold, args.smooth,
                        int(round(args.refractory_ms / 1e3 / frame_s)), ignore)
    features = LogMelStream(cfg)
    chunk = max(1, int(args.chunk_ms / 1e3 * cfg.sample_rate))
    source = mic_chunks(cfg.sample_rate, chunk, args.seconds) if args.mic else \
        wav_chunks(args.wav, cfg.sample_rate, chunk, args.seconds)
    truth = read_truth(args.truth) if args.truth else None
    reports: list[tuple[str, float]] = []
    try:
        for audio in source:
            for frame in features.push(audio):
                for t, post in decoder.push(frame):
                    d = detector.update(t, post)
                    if d:
                        # a window ending at frame t covers audio up to t*hop + win samples
                        when = (t * cfg.hop + cfg.win) / cfg.sample_rate
                        reports.append((d.label, when))
                        if args.jsonl:
                            print_json({"time_s": round(when, 3), "label": d.label, "confidence": round(d.confidence, 4)})
                        else:
                            print(f"{when:8.2f} s  {d.label}  ({d.confidence:.2f})", flush=True)
    except KeyboardInterrupt:
        pass
    seconds = decoder.frame * frame_s
    if args.wav and decoder.frame < window:  # no window was ever complete: "0 keywords" would be no answer
        raise UserError(f"{args.wav} gave {seconds:.2f} s of audio, less than the model's {window * frame_s:.2f} s "
                        f"window: no keyword can be decided; give a longer recording")
    print(f"{seconds:.1f} s of audio, {len(reports)} keyword(s)", file=sys.stderr)
    if truth is not None:
        from runtime.detect import score
        duration = float(truth.get("duration_s") or seconds)
        r = score(reports, truth["events"], duration, args.tolerance_ms / 1e3)
        print(f"score: {r['found']}/{r['keywords']} keywords found (detection rate {r['detection_rate']:.3f}), "
              f"{r['false_alarms']} false alarm(s) in {duration / 60:.2f} min = {r['false_alarms_per_min']:.2f}/min",
              file=sys.stderr)
        if args.jsonl:
            print_json({"score": r})
    return 0


def read_truth(path) -> dict:
    import json
    try:
        data = json.loads(open(path).read())
        data["events"] = [{"label": e["label"], "start_s": float(e["start_s"]), "end_s": float(e["end_s"])}
                          for e in data["events"]]
    except OSError as e:
        raise UserError(f"cannot read ground truth {path}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not a kws_stream ground-truth file (needs events with label, start_s, end_s): {e}") from None
    return data
