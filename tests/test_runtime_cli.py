"""``python -m runtime ...``: exit codes, one-line errors, and what each app prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from runtime.manifest import Manifest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, stdin: str | None = None, timeout: int = 120):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "runtime", *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=timeout, env=env, cwd=ROOT)


def assert_user_error(p, match: str):
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and match in lines[-1], p.stderr
    assert "Traceback" not in p.stderr


@pytest.fixture(scope="module")
def folder(fixture_artifacts):
    return fixture_artifacts("gru")


@pytest.fixture(scope="module")
def golden(folder):
    return dict(np.load(folder / "golden.npz"))


def test_predict_npz_and_csv(folder, golden, tmp_path):
    p = cli("predict", folder, "--input", folder / "golden.npz", "--json", "--out", tmp_path / "s.npz")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(rows) == len(golden["x_raw"])
    assert [r["class"] for r in rows] == golden["scores"].argmax(1).tolist()
    np.testing.assert_allclose(np.load(tmp_path / "s.npz")["scores"], golden["scores"], atol=1e-4)
    csv = tmp_path / "one.csv"
    np.savetxt(csv, golden["x_raw"][0], delimiter=",", header="a,b,c"[: 2 * golden["x_raw"].shape[2] - 1], comments="")
    p = cli("predict", folder, "--input", csv, "--stream")
    assert p.returncode == 0, p.stderr
    names = Manifest.read(folder).class_names
    assert p.stdout.split("\t")[1] == names[int(golden["scores"][0].argmax())]
    train_format = tmp_path / "mine.npz"  # the training format (X, y, class_names) is read as it is
    np.savez(train_format, X=golden["x_raw"], y=golden["y"], class_names=np.array(names))
    p = cli("predict", folder, "--input", train_format, "--json")
    assert p.returncode == 0, p.stderr
    assert [json.loads(line)["class"] for line in p.stdout.splitlines()] == golden["scores"].argmax(1).tolist()


def test_predict_errors(folder, tmp_path):
    assert_user_error(cli("predict", folder, "--input", tmp_path / "nope.npz"), "not found")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_raw=np.zeros((1, 5, 99), np.float32))
    assert_user_error(cli("predict", folder, "--input", bad), "channels")
    nan = tmp_path / "nan.npz"
    np.savez(nan, x_raw=np.full((1, 5, Manifest.read(folder).model["input_size"]), np.nan, np.float32))
    assert_user_error(cli("predict", folder, "--input", nan), "NaN")
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_user_error(cli("predict", folder, "--input", pickled), "pickle")
    assert_user_error(cli("predict", tmp_path, "--input", bad), "manifest.json")


def test_check_passes_then_fails_on_tampering(folder, tmp_path):
    p = cli("check", folder, "--backend", "onnxruntime")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "within tolerance" in p.stdout and "FAIL" not in p.stdout
    copy = shutil.copytree(folder, tmp_path / "a")
    entry = next(a for a in Manifest.read(copy).artifacts if a["runtime"] == "onnxruntime")
    with open(copy / entry["file"], "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    p = cli("check", copy)
    assert p.returncode == 1 and "sha256" in p.stdout, p.stdout + p.stderr
    golden = copy / "golden.npz"
    golden.write_bytes(golden.read_bytes()[:-10])
    assert_user_error(cli("check", copy), "golden file")


def test_check_fails_out_of_tolerance(folder, tmp_path):
    """A model that disagrees with the golden scores fails `check` (exit 1): the check can fail."""
    copy = shutil.copytree(folder, tmp_path / "a")
    g = dict(np.load(copy / "golden.npz"))
    g["scores"] = g["scores"][:, ::-1].copy()  # reference decisions reversed
    np.savez(copy / "golden.npz", **g)
    from runtime.manifest import sha256_of
    data = json.loads((copy / "manifest.json").read_text())
    data["golden"]["sha256"] = sha256_of(copy / "golden.npz")
    (copy / "manifest.json").write_text(json.dumps(data))
    p = cli("check", copy, "--artifact", "onnx-float32", "--json")
    assert p.returncode == 1, p.stdout + p.stderr
    row = json.loads(p.stdout.splitlines()[0])
    assert row["verdict"] == "FAIL" and "max|err|" in row["why"]


def test_allowed_disagreements_is_the_binomial_tail():
    """The golden rows are judged as a sample (audit: `check` failed an untouched watch GRU export,
    whose int8 step graph agrees with float on 98.3% of the test split, on 1 disagreement in 8 rows)."""
    from math import comb
    from runtime.tolerances import allowed_disagreements
    assert allowed_disagreements(8, 1 - 1e-9) == 0  # float32: every decision must agree
    k = allowed_disagreements(8, 0.95)
    tail = lambda k: sum(comb(8, i) * 0.05 ** i * 0.95 ** (8 - i) for i in range(k, 9))
    assert k == 2 and tail(2) >= 0.01 > tail(3)
    assert allowed_disagreements(1064, 0.95) < 1064 * 0.07  # many rows: close to the point rule


def test_check_judges_golden_rows_as_a_sample():
    from runtime.apps.check import judge
    m = dict(max_abs_err=1.2, ref_peak=10.0, rel_err=0.01, top1_agreement=7 / 8, accuracy_drop=0.125)
    assert judge(m, "int8", rows=8) == []  # one unlucky row (and its 12.5 accuracy points) is no evidence
    assert "top-1 differs in 3 of 8 golden decisions (at most 2 fit the 95% agreement of int8)" in \
        judge({**m, "top1_agreement": 5 / 8}, "int8", rows=8)
    assert any("score error" in b for b in judge({**m, "rel_err": 0.5}, "int8", rows=8))  # a wrong scale, no decision moved
    assert any("top-1" in b for b in judge({**m, "max_abs_err": 1e-6, "top1_agreement": 7 / 8}, "float32", rows=8))


def test_bench_reports_median_and_p90(folder):
    p = cli("bench", folder, "--repeats", "5", "--warmup", "1", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["threads"] == 1 and r["backend"] == "onnxruntime"
    for k in ("sequence", "step"):
        assert 0 < r[k]["median_ms"] <= r[k]["p90_ms"]
    assert_user_error(cli("bench", folder, "--repeats", "0"), "--repeats")
    for length in ("0", "-5"):  # audit: -5 benchmarked T=95 and 0 the default length, silently
        assert_user_error(cli("bench", folder, "--length", length), "--length >= 1")


def test_sense_streams_csv_rows(folder, golden, tmp_path):
    """IMU rows of three labelled windows back to back: the detections name their classes."""
    x, y = golden["x_raw"], golden["y"]
    right = [i for i in range(len(x)) if golden["scores"][i].argmax() == y[i]][:3]
    rows = np.concatenate([x[i] for i in right])
    text = "\n".join(",".join(f"{v:.7g}" for v in r) for r in rows)
    names = Manifest.read(folder).class_names
    p = cli("sense", "--model", folder, "--csv", "-", "--lanes", "1", "--threshold", "0.01", "--smooth", "1",
            "--refractory", "0", "--jsonl", stdin=text)
    assert p.returncode == 0, p.stderr
    det = [json.loads(line) for line in p.stdout.splitlines()]
    assert [d["label"] for d in det] == [names[y[i]] for i in right]  # one decision per window, lanes=1
    assert f"{len(rows)} frames" in p.stderr
    assert_user_error(cli("sense", "--model", folder, "--csv", "-", stdin="1,2\n"), "channels")
    assert_user_error(cli("sense", "--model", folder, "--csv", "-", stdin="a,b,c\n1,x,3\n"), "not numeric")
    latin = tmp_path / "latin.csv"  # audit: bytes that are not UTF-8 in a file were a UnicodeDecodeError traceback
    latin.write_bytes(b"a,b,c\n1,2\xe9,3\n")
    assert_user_error(cli("sense", "--model", folder, "--csv", latin), "line 2 is not numeric")


def test_listen_errors(folder, tmp_path):
    from runtime.wav import write_wav
    wav = write_wav(tmp_path / "a.wav", np.zeros(16000, np.float32))
    assert_user_error(cli("listen", "--model", folder, "--wav", wav), "log-mel")
    if shutil.which("arecord") is None:
        assert_user_error(cli("listen", "--model", folder, "--mic"), "arecord")
    assert cli("listen", "--model", folder).returncode == 2  # neither --wav nor --mic


def test_listen_runs_audio_through_features_and_model(tmp_path, monkeypatch, capsys):
    """A tiny 40-band model (bare ONNX): 2.5 s of audio -> 248 frames, windows decoded, exit 0."""
    torch = pytest.importorskip("torch")
    from training.models import ModelSpec, SequenceModel
    from runtime.wav import write_wav
    torch.manual_seed(0)
    m = SequenceModel(ModelSpec("gru", 40, (8,), 3)).eval()
    onnx = tmp_path / "kws.onnx"
    frame, state = torch.zeros(1, 40), torch.zeros(1, 8)

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, f, h):
            y, (h2,) = self.m.step(f, [h.unsqueeze(0)])
            return y, h2.squeeze(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Step().eval(), (frame, state), str(onnx), input_names=["frame", "state_in_0"],
                          output_names=["scores", "state_out_0"], dynamo=False)
    rng = np.random.default_rng(0)
    wav = write_wav(tmp_path / "a.wav", (0.1 * rng.standard_normal(40000)).astype(np.float32))
    p = cli("listen", "--model", onnx, "--wav", wav, "--threshold", "0.01", "--smooth", "1",
            "--refractory-ms", "0", "--lanes", "2", "--jsonl", "--chunk-ms", "37")
    assert p.returncode == 0, p.stderr
    det = [json.loads(line) for line in p.stdout.splitlines()]
    # bare model: window = 98 frames (1 s), hop 49 -> windows end at frames 97, 146, 195, 244
    assert len(det) == 4 and all(d["label"] in "012" for d in det)
    assert "2.5 s of audio" in p.stderr
    # audit: an empty WAV, or one shorter than a window, reported "0 keyword(s)" with exit 0
    for n in (0, 8000):
        short = write_wav(tmp_path / f"short{n}.wav", np.zeros(n, np.float32))
        assert_user_error(cli("listen", "--model", onnx, "--wav", short), "less than the model's 0.98 s window")
    # a model trained on 1.5 s clips (148 frames; audit: listen refused it, advising a re-export that
    # could not help) decodes windows of its own length: they end at frames 147, 221
    import runtime.apps.listen as listen
    from runtime.__main__ import main as runtime_main
    from runtime.features import FeatureConfig
    monkeypatch.setattr(listen, "window_of", lambda model, default=None: 148)
    monkeypatch.setattr(listen, "feature_config", lambda model: (FeatureConfig(), True))  # as an export records it
    assert runtime_main(["listen", "--model", str(onnx), "--wav", str(wav), "--threshold", "0.01", "--smooth", "1",
                         "--refractory-ms", "0", "--lanes", "2", "--jsonl"]) == 0
    times = [json.loads(line)["time_s"] for line in capsys.readouterr().out.splitlines()]
    assert times == [round((t * 160 + 400) / 16000, 3) for t in (147, 221)], times
