"""The log-mel front-end (runtime/features.py) and the WAV helpers (runtime/wav.py)."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from runtime.errors import UserError
from runtime.features import DEFAULT, FeatureConfig, LogMelStream, hz_to_mel, log_mel, mel_filterbank, mel_to_hz
from runtime.wav import read_wav, resample, write_wav


def test_one_second_gives_98_frames_of_40():
    f = log_mel(np.zeros(16000, dtype=np.float32))
    assert f.shape == (98, 40) and f.dtype == np.float32
    assert np.allclose(f, np.log(1e-6))  # silence sits exactly on the floor
    assert DEFAULT.num_frames(399) == 0 and DEFAULT.num_frames(400) == 1 and DEFAULT.num_frames(560) == 2


def test_frame_i_covers_samples_from_i_times_hop():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000) * 0.1
    f = log_mel(x)
    for i in (0, 3, len(f) - 1):
        assert np.allclose(f[i], log_mel(x[i * 160:i * 160 + 400])[0], atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_streaming_equals_offline_for_random_chunk_sizes(seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(int(rng.integers(8000, 40000))) * rng.uniform(0.01, 0.5)).astype(np.float32)
    offline = log_mel(x)
    stream, pieces, i = LogMelStream(), [], 0
    while i < len(x):
        k = int(rng.choice([1, 7, 159, 160, 161, 399, 400, 401, int(rng.integers(1, 5000))]))
        pieces.append(stream.push(x[i:i + k]))
        i += k
    online = np.concatenate(pieces)
    assert online.shape == offline.shape
    assert np.max(np.abs(online - offline)) <= 1e-6
    assert stream.frames_emitted == len(offline)


def test_stream_reset_and_int16_input():
    rng = np.random.default_rng(1)
    x16 = (rng.standard_normal(3000) * 3000).astype(np.int16)
    s = LogMelStream()
    first = np.concatenate([s.push(x16[:1234]), s.push(x16[1234:])])
    s.reset()
    again = s.push(x16)
    assert np.array_equal(first, again)
    assert np.allclose(again, log_mel(x16.astype(np.float32) / 32768), atol=1e-6)
    assert s.push(np.zeros(0, dtype=np.float32)).shape == (0, 40)


def test_log_mel_equals_an_independent_computation():
    """Against torch's STFT and a filterbank built here from the HTK definition, triangle by
    triangle (test-suite audit: the front-end was only compared with itself, so a rectangular
    window or |X| instead of |X|^2 passed every test). torch.stft centres the 400-sample window in
    the 512-point FFT where we zero-pad its end: a circular shift within the FFT, so the power is the
    same once the audio is offset by the 56 samples that puts the window on our frame's samples."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    t = np.arange(16000) / 16000.0
    audio = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(16000)
    window = torch.hann_window(400, periodic=True, dtype=torch.float64)
    # torch puts the window at offset (512 - 400) / 2 = 56 inside each 512-sample frame: pad by 56
    spec = torch.stft(torch.from_numpy(np.pad(audio, 56)), n_fft=512, hop_length=160, win_length=400, window=window,
                      center=False, return_complex=True)
    power = (spec.abs() ** 2).numpy().T  # [frames, 257]
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731 - HTK
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    points = [hz(m) for m in np.linspace(mel(20.0), mel(8000.0), 42)]
    freqs = np.arange(257) * 16000.0 / 512
    bank = np.zeros((257, 40))
    for m in range(40):
        left, centre, right = points[m], points[m + 1], points[m + 2]
        for k, f in enumerate(freqs):
            if left < f <= centre:
                bank[k, m] = (f - left) / (centre - left)
            elif centre < f < right:
                bank[k, m] = (right - f) / (right - centre)
    want = np.log(power @ bank + 1e-6)
    got = log_mel(audio)
    assert got.shape == want.shape == (98, 40)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_mel_filterbank_sanity():
    fb = mel_filterbank()
    assert fb.shape == (257, 40)
    assert np.all(fb >= 0) and np.all(fb.max(axis=0) > 0.3) and fb.max() <= 1.0
    assert np.all(fb.sum(axis=0) > 0)  # no empty filter
    peaks = fb.argmax(axis=0)
    assert np.all(np.diff(peaks) >= 0)  # centres increase with the band index
    freqs = np.fft.rfftfreq(512, 1 / 16000)
    assert freqs[peaks[0]] < 150 and freqs[peaks[-1]] > 6500
    assert np.allclose(mel_to_hz(hz_to_mel([0, 700, 8000])), [0, 700, 8000])
    with pytest.raises(ValueError):
        fb[0, 0] = 1  # cached and read-only


def test_a_tone_lights_the_band_that_holds_its_frequency():
    t = np.arange(16000) / 16000
    f = log_mel(0.5 * np.sin(2 * np.pi * 1000 * t))
    fb = mel_filterbank()
    bin_1k = int(round(1000 / (16000 / 512)))
    assert f.mean(axis=0).argmax() == fb[bin_1k].argmax()


def test_bad_audio_is_refused():
    with pytest.raises(UserError, match="1-D"):
        log_mel(np.zeros((2, 16000)))
    with pytest.raises(UserError, match="NaN"):
        log_mel(np.full(16000, np.nan))
    with pytest.raises(UserError, match="dtype"):
        log_mel(np.zeros(16000, dtype=np.int32))
    with pytest.raises(UserError):
        FeatureConfig(win=600, n_fft=512)


def test_wav_round_trip_and_other_rate(tmp_path):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    p = write_wav(tmp_path / "a.wav", x)
    y, rate = read_wav(p)
    assert rate == 16000 and np.max(np.abs(x - y)) <= 1 / 32768
    write_wav(tmp_path / "b.wav", x, sample_rate=8000)
    with pytest.raises(UserError, match="8000 Hz.*sox"):
        read_wav(tmp_path / "b.wav")
    up, rate = read_wav(tmp_path / "b.wav", resample_to_rate=True)
    assert rate == 16000 and len(up) == 32000


def test_resample_keeps_a_tone():
    t = np.arange(22050) / 22050
    x = np.sin(2 * np.pi * 440 * t)
    y = resample(x, 22050, 16000)
    assert len(y) == 16000
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.max(np.abs(y - ref)) < 1e-3


def test_bad_wav_files(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")
    with pytest.raises(UserError, match="not a readable PCM WAV"):
        read_wav(tmp_path / "junk.wav")
    with wave.open(str(tmp_path / "8bit.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(1), w.setframerate(16000), w.writeframes(bytes(100))
    with pytest.raises(UserError, match="16-bit"):
        read_wav(tmp_path / "8bit.wav")
    with pytest.raises(UserError, match="not found"):
        read_wav(tmp_path / "missing.wav")
    with wave.open(str(tmp_path / "stereo.wav"), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(np.array([[1000, 3000]] * 10, dtype="<i2").tobytes())
    mono, _ = read_wav(tmp_path / "stereo.wav")
    assert np.allclose(mono, 2000 / 32768)
