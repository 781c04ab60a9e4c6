"""Smoke test of the benchmark (`python -m bench --quick`) on the fixture LSTM: report structure, measured figures."""

from __future__ import annotations

import json
import math

import pytest

from bench.__main__ import main
from runtime.errors import UserError


def _finite_positive(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def test_quick_bench_on_fixture(fixture_artifacts, tmp_path, capsys):
    folder = fixture_artifacts("lstm")
    out = tmp_path / "report"
    rc = main(["--quick", "--no-progress", "--artifacts", str(folder), "--out", str(out), "--task", "fixture",
               "--hidden", "8,16,24", "--lengths", "10,20,40"])
    assert rc == 0
    r = json.loads((out / "bench.json").read_text())
    md = (out / "bench.md").read_text()
    for section in ("## Goals", "## Runtimes", "## Microcontrollers", "## Raspberry Pi 4", "## TFLite Micro vs our int8 C",
                    "## Scaling", "## Training"):
        assert section in md
    for png in ("runtimes_latency.png", "mcu_instructions_per_mac.png", "scaling_latency.png", "scaling_instructions.png", "tflm_vs_c.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r["machine"]["cpu_count"] >= 1 and r["machine"]["tools"]["arm-none-eabi-gcc"]

    rows = r["runtimes"][0]["rows"]
    assert not [x for x in rows if "error" in x], [x for x in rows if "error" in x]
    runtimes = {x["runtime"] for x in rows}
    assert {"torch", "onnxruntime", "litert", "tflm", "c"} <= runtimes
    for x in rows:
        t = x.get("sequence") or x["step"]
        assert _finite_positive(t["median_ms"]) and t["p90_ms"] >= t["median_ms"]
        assert x["memory"]["rss_base_mb"] > 0 and x["memory"]["run_peak_mb"] >= 0
    assert any(x["memory"]["load_peak_mb"] > 1 for x in rows)  # loading a backend costs memory

    m4 = next(x for x in r["mcu"] if x["target"] == "cortex-m4")
    assert _finite_positive(m4["instructions"]["per_mac"]) and m4["host_identical"] is True
    assert _finite_positive(m4["flash"]["model_total"]) and _finite_positive(m4["ram"]["total"])

    (pi,) = r["pi"]  # exact aarch64 counts: the NEON build runs fewer instructions than the portable one
    assert pi["neon"]["host_identical"] and pi["portable"]["host_identical"], pi
    assert 0 < pi["neon"]["instructions"] < pi["portable"]["instructions"] and pi["portable_over_neon"] > 1.2, pi

    t = r["tflm"]
    for level in ("runtime_level", "kernel_level"):
        assert _finite_positive(t[level]["speedup"])
        assert _finite_positive(t[level]["c_ms"]["median_ms"]) and _finite_positive(t[level]["tflm_ms"]["median_ms"])
    assert _finite_positive(t["ram"]["tflm_arena_bytes"]) and _finite_positive(t["ram"]["c_bytes"])

    s = r["scaling"]
    assert [p["hidden"] for p in s["sweeps"]["hidden"]] == [8, 16, 24]
    assert [p["length"] for p in s["sweeps"]["length"]] == [10, 20, 40]
    for sweep in ("hidden", "length"):
        f = s["fits"][sweep]["m4_instructions"]
        assert 0.9 < f["r2"] <= 1.0 and f["slope"] > 0  # instructions grow with MACs
        assert all(_finite_positive(p["m4"]["instructions"]) for p in s["sweeps"][sweep])
    assert all(_finite_positive(x["sequences_per_s"]) for x in r["training"]["short_run"])

    names = [g["goal"] for g in r["goals"]]
    assert any("TFLite Micro" in n for n in names) and any("instructions per MAC" in n for n in names)
    assert all(g["met"] in (True, False) for g in r["goals"])
    assert "wrote" in capsys.readouterr().out


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["--artifacts", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no artifact folder") and "\n" not in err
    assert main(["--only", "nonsense", "--artifacts", str(tmp_path), "--no-progress"]) == 2


@pytest.mark.parametrize("flag", ["--hidden", "--lengths"])
def test_sweep_sizes_checked(tmp_path, capsys, flag):
    assert main([flag, "8,x", "--only", "scaling", "--out", str(tmp_path), "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_calibration_benchmark_converts_once_per_sample_size(fixture_run, capsys):
    """`python -m bench.calibration`: a real int8 conversion per size, LiteRT and TFLite Micro rows."""
    from bench.calibration import main as calibration_main
    assert calibration_main([str(fixture_run("gru")), "--windows", "4", "32"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("4", "tflite-int8"), ("4", "tflm-int8"), ("32", "tflite-int8"), ("32", "tflm-int8")]
    assert all(math.isfinite(float(r[4])) and float(r[4]) >= 0 for r in rows)  # largest score error
    assert calibration_main([str(fixture_run("gru")), "--windows", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --windows")


def test_a_partial_run_keeps_the_other_sections(tmp_path):
    """Audit: `python -m bench --only runtimes` replaced docs/benchmarks/bench.md and .json with that one part."""
    from bench.__main__ import PARTS
    from bench.report import carry_over
    from runtime.atomic import write_json
    write_json(tmp_path / "bench.json", {"started": "2026-11-29 10:00", "runtimes": ["old"], "mcu": ["m4"], "pi": ["a72"]})
    result = {"started": "2026-11-29 12:00", "runtimes": ["new"]}
    assert carry_over(result, tmp_path, ("runtimes",), PARTS) == ["mcu", "pi"]
    assert result["runtimes"] == ["new"] and result["mcu"] == ["m4"] and result["pi"] == ["a72"]
    assert result["carried"] == {"mcu": "2026-11-29 10:00", "pi": "2026-11-29 10:00"}
    write_json(tmp_path / "bench.json", result)  # carried twice: still dated by the run that measured it
    again = {"started": "2026-11-29 13:00", "mcu": ["m4 new"]}
    carry_over(again, tmp_path, ("mcu",), PARTS)
    assert again["carried"] == {"runtimes": "2026-11-29 12:00", "pi": "2026-11-29 10:00"}
    assert carry_over({}, tmp_path / "none", ("runtimes",), PARTS) == []  # nothing to keep
    (tmp_path / "bench.json").write_text("{")
    with pytest.raises(UserError, match="damaged"):
        carry_over({}, tmp_path, ("runtimes",), PARTS)
