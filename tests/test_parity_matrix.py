"""Parity suite in CI: one test per matrix cell (e.g. ``gru-int8-tflm``) on the small fixture model.

The matrix of each architecture runs once per session (``parity_matrix``) on the shared fixture
artifact folder; each test then reports its own cell. A cell whose runtime is not installed is
SKIPPED with the reason - never passed. ``PLAN`` lists the cells the default export must yield:
a cell that disappears (an artifact no longer exported, a provider that lost it) fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from parity.cells import ERROR, FAIL, SKIP

# The cells the fixture export must give, per architecture (readable ids = test ids).
COMMON = [
    # references: the golden file, PyTorch through runtime.load, the ONNX spec in numpy
    "float32-golden", "float32-torch", "float32-torch-stream", "float32-onnx-reference",
    # ONNX Runtime: native RNN ops, step graph, dynamic int8, static QDQ, decomposed step graphs
    "float32-onnxruntime", "float32-onnxruntime-stream", "dynamic-range-onnxruntime", "int8-onnxruntime-qdq",
    "float32-onnxruntime-decomposed-stream", "int8-onnxruntime-decomposed-stream",
    # LiteRT and TFLite Micro, whole sequences and streaming
    "float32-litert", "float16-litert", "dynamic-range-litert", "int8-litert",
    "float32-litert-stream", "int8-litert-stream",
    "int8-litert-ref", "int8-litert-ref-stream",  # LiteRT's reference kernels (no XNNPACK)
    "int8-tflm", "float32-tflm-stream", "int8-tflm-stream",
    # generated C on the host, its numpy integer twin, and on Cortex-M cores under QEMU
    "float32-c", "float32-c-stream", "int8-c", "int8-c-stream", "int8-c-reference",
    "float32-cortex-m4", "int8-cortex-m4", "int8-cortex-m3",
    # the same ONNX / TFLite files on an emulated Raspberry Pi 4 (aarch64)
    "float32-rpi-onnxruntime", "float32-rpi-onnxruntime-stream", "dynamic-range-rpi-onnxruntime",
    "int8-rpi-onnxruntime-qdq", "float32-rpi-onnxruntime-decomposed-stream", "int8-rpi-onnxruntime-decomposed-stream",
    "float32-rpi-litert", "float16-rpi-litert", "dynamic-range-rpi-litert", "int8-rpi-litert",
    "float32-rpi-litert-stream", "int8-rpi-litert-stream",
    "int8-rpi-litert-ref", "int8-rpi-litert-ref-stream",  # bit-exact with the host's reference kernels
    "float32-rpi-c", "float32-rpi-c-stream", "int8-rpi-c", "int8-rpi-c-stream",  # cross-built library, NEON
]
PLAN = {
    # GRU: unrolled int8/16x8 TFLite graphs (16x8 converts); the float WHILE-loop graph does not run on TFLM
    "gru": COMMON + ["int16x8-litert", "int16x8-rpi-litert", "int16x8-litert-ref", "int16x8-rpi-litert-ref"],
    # LSTM: fused op (no 16x8 conversion); its float sequence graph runs on TFLM too
    "lstm": COMMON + ["float32-tflm"],
}
CASES = [(arch, f"{arch}-{cell}") for arch in ("gru", "lstm") for cell in PLAN[arch]]


@pytest.fixture(scope="session")
def parity_matrix(fixture_artifacts):
    """``parity_matrix(arch)`` -> the judged Matrix of the fixture artifacts (run once per session)."""
    cache: dict = {}

    def get(arch: str):
        if arch not in cache:
            from parity.matrix import run_matrix
            cache[arch] = run_matrix(fixture_artifacts(arch), progress=False)
        return cache[arch]
    return get


@pytest.mark.parametrize("arch,cell", CASES, ids=[c for _, c in CASES])
def test_cell(parity_matrix, arch, cell):
    matrix = parity_matrix(arch)
    ids = [r.id for r in matrix.results]
    if cell not in ids:
        pytest.fail(f"cell {cell} is missing from the matrix (artifact not exported or provider lost it); "
                    f"cells: {', '.join(ids)}; not exported: {matrix.not_exported}")
    r = matrix.result(cell)
    if r.status == SKIP:
        pytest.skip(f"{cell}: {'; '.join(r.failures)}")
    assert r.status not in (FAIL, ERROR), f"{cell} {r.status}: {'; '.join(r.failures)} (metrics {r.metrics})"
    assert r.n_inputs > 0 and r.metrics, f"{cell} ran on no inputs"


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_matrix_verdict(parity_matrix, arch):
    """Every cell, planned or not, within tolerance; at least 10 runtime x precision cells ran."""
    matrix = parity_matrix(arch)
    assert matrix.ok, "failing cells: " + "; ".join(f"{r.id}: {'; '.join(r.failures)}" for r in matrix.failed)
    ran = {(r.cell.runtime, r.cell.precision) for r in matrix.results
           if r.status == "pass" and r.cell.runtime != "golden"}
    assert len(ran) >= 10, f"only {len(ran)} runtime x precision pairs ran: {sorted(ran)}"
    unplanned = sorted(set(r.id for r in matrix.results) - {f"{arch}-{c}" for c in PLAN[arch]})
    assert not unplanned, f"cells not in PLAN (add them to tests/test_parity_matrix.py): {unplanned}"


def test_float_limits_scale_with_the_reference_peak_and_int_limits_do_not():
    """float32 max_abs is 1e-4 x max(1, peak |reference|): relative rounding, not a looser rule for
    small outputs; int8 has no max_abs at all (judged on decisions, LSBs and RMSE / range)."""
    from parity.judge import judge
    from runtime.tolerances import abs_limit, tolerance_for
    f32 = tolerance_for("float32")
    assert abs_limit(f32, 0.3) == abs_limit(f32, None) == 1e-4  # outputs below 1 keep the absolute limit
    assert abs_limit(f32, 8.0) == pytest.approx(8e-4)
    assert abs_limit(tolerance_for("int8"), 8.0) is None
    ok = {"max_abs_err": 5e-4, "ref_peak": 8.0, "top1_agreement": 1.0, "accuracy_drop": 0.0}
    assert judge("float32", ok) == []
    assert judge("float32", {**ok, "ref_peak": 1.0})  # the same error on outputs of order 1 fails
    assert judge("float32", {**ok, "max_abs_err": 1e-3})  # and a larger one fails at any peak
    per_frame = {**ok, "max_abs_err": 0.0, "stream_max_abs_err": 5e-4, "stream_ref_peak": 2.0}
    assert any("per-frame" in b for b in judge("float32", per_frame))


@pytest.mark.parametrize("precision", ["int8", "int16x8", "dynamic-range"])
def test_integer_scores_are_judged_by_size_not_only_decisions(precision):
    """Audit: a constant shift or a rescale of every score (a dropped output zero point, a wrong
    scale) kept every decision and passed. Now RMSE / reference range is bounded too."""
    from parity.judge import judge
    from runtime.metrics import compare
    from runtime.tolerances import tolerance_for
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((300, 7)) * 3
    labels = ref.argmax(-1)
    span = float(ref.max() - ref.min())
    limit = tolerance_for(precision).max_rel_err
    noise = rng.standard_normal(ref.shape)
    noise /= np.sqrt(np.mean(noise ** 2))
    quantized = compare(ref + 0.3 * limit * span * noise, ref, labels)  # what rounding looks like: fine
    assert quantized["rel_err"] == pytest.approx(0.3 * limit, rel=1e-6)
    assert not [b for b in judge(precision, quantized) if "score error" in b]
    for wrong in (ref + 2 * limit * span, ref * 3.0, ref * 0.05):
        m = compare(wrong, ref, labels)
        assert m["top1_agreement"] == 1.0 and m["accuracy_drop"] == 0.0
        assert any("score error (RMSE / reference range)" in b for b in judge(precision, m)), judge(precision, m)
    # float formats keep their max_abs rule and get no second one
    assert judge("float32", compare(ref, ref, labels)) == []


def test_lsb_per_row_and_the_failure_names_how_many_rows():
    from parity.judge import judge
    from runtime.metrics import lsb_per_row
    scale = 0.1
    a = np.zeros((3, 4))
    b = a.copy()
    b[1, 2], b[2, 0] = 0.3, -2.0  # 3 and 20 LSB in rows 1 and 2
    assert lsb_per_row(a, b, scale).tolist() == [0, 3, 20]
    lsb = {"lsb": 20, "rows_over": 1, "rows": 3, "max_lsb": 16}
    assert judge("int8", {"top1_agreement": 1.0, "lsb": {"x": lsb}}) == ["20 LSB from x (> 16 LSB allowed; 1 of 3 rows)"]


def test_lsb_rule_with_a_share_of_rows_allowed_over():
    """tflm vs litert (int8): at most 1% of the rows beyond 16 LSB and none beyond 64; the exact rules
    (max_lsb 0) still allow no row at all. Judged from the metrics the matrix stores."""
    from parity.judge import judge
    from runtime.tolerances import LSB_RULES
    rule = next(r for r in LSB_RULES if (r.runtime, r.against, r.precision) == ("tflm", "litert", "int8"))
    assert (rule.rows_allowed_over(128), rule.rows_allowed_over(1072), rule.rows_allowed_over(72)) == (1, 10, 0)
    assert all(r.rows_over_share == 0 and r.cap() == 0 for r in LSB_RULES if r.max_lsb == 0)

    def verdict(worst, rows_over, rows):
        lsb = {"lsb": worst, "rows_over": rows_over, "rows": rows, "max_lsb": rule.max_lsb,
               "rows_allowed_over": rule.rows_allowed_over(rows), "worst_lsb": rule.cap()}
        return judge("int8", {"top1_agreement": 1.0, "lsb": {"x": lsb}})
    assert verdict(20, 1, 128) == []  # one compounding sequence of 128 (the watch-lstm stream cell)
    assert verdict(19, 1, 1072) == []  # and of 1072 (the retrained watch-lstm's whole-sequence cell)
    assert verdict(20, 2, 128) == ["20 LSB from x (> 16 LSB allowed on more than 1 row; 2 of 128 rows)"]
    assert verdict(17, 11, 1072) == ["17 LSB from x (> 16 LSB allowed on more than 10 rows; 11 of 1072 rows)"]
    assert verdict(65, 1, 128) == ["65 LSB from x (> 64 LSB: no row may go beyond it)"]
    assert verdict(20, 1, 72) == ["20 LSB from x (> 16 LSB allowed; 1 of 72 rows)"]  # too few rows for a share
    exact = {"lsb": 1, "rows_over": 1, "rows": 128, "max_lsb": 0, "rows_allowed_over": 0, "worst_lsb": 0}
    assert judge("int8", {"top1_agreement": 1.0, "lsb": {"c": exact}}) == ["1 LSB from c (not bit-exact; 1 of 128 rows)"]
    identical = {"max_abs_diff": 0.0, "rows_differing": 0, "rows": 8}
    assert judge("int8", {"top1_agreement": 1.0, "exact": {"h": identical}}) == []
    differing = {"max_abs_diff": 0.25, "rows_differing": 2, "rows": 8}
    assert judge("int8", {"top1_agreement": 1.0, "exact": {"h": differing}}) == [
        "differs from h by up to 0.25 (not bit-identical; 2 of 8 rows)"]


def test_trace_reproduces_the_stream_cells_lsb_distance(parity_matrix, fixture_artifacts):
    """`python -m parity.trace` streams the same sample rows as the stream cells: its per-row final
    distances end where the matrix's tflm-vs-litert LSB does, and an artifact against itself is 0."""
    from parity.trace import trace
    folder = fixture_artifacts("lstm")
    cell = parity_matrix("lstm").result("lstm-int8-tflm-stream")
    (lsb,) = cell.metrics["lsb"].values()
    t = trace(folder, "tflm-int8-step", "tflite-int8-step")
    assert t["rows"] == lsb["rows"] and max(t["final_lsb"]) == lsb["lsb"]
    assert t["worst_row_per_step"][-1] == lsb["lsb"]
    same = trace(folder, "tflite-int8-step", "tflite-int8-step")
    assert set(same["final_lsb"]) == {0} and set(same["worst_row_per_step"]) == {0}
    ref = trace(folder, "tflm-int8-step", "tflite-int8-step:ref")  # LiteRT's reference kernels
    assert ref["rows"] == lsb["rows"] and max(ref["final_lsb"]) <= 16


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_integer_cells_are_measured_against_their_twin(parity_matrix, arch):
    """The LSB rules are really applied (a cell without its twin would pass vacuously): C against its
    numpy twin and Cortex-M against host C bit-exact, the Pi's reference kernels against the host's
    bit-exact, TFLite Micro against LiteRT in LSBs, streamed too. The GRU's int8 step graph has float
    outputs: its LSB is the scale of the int8 tensor that its last DEQUANTIZE reads (manifest
    ``dequantized_from``)."""
    matrix = parity_matrix(arch)
    twins = {f"{arch}-int8-c": f"{arch}-int8-c-reference", f"{arch}-int8-cortex-m4": f"{arch}-int8-c",
             f"{arch}-int8-rpi-litert-ref": f"{arch}-int8-litert-ref",
             f"{arch}-int8-rpi-litert-ref-stream": f"{arch}-int8-litert-ref-stream",
             f"{arch}-int8-tflm": f"{arch}-int8-litert", f"{arch}-int8-tflm-stream": f"{arch}-int8-litert-stream"}
    for cell, twin in twins.items():
        r = matrix.result(cell)
        if r.status == SKIP:
            continue
        lsb = r.metrics.get("lsb", {}).get(twin)
        assert lsb is not None and lsb["rows"] > 0, (cell, r.metrics)
        if "tflm" not in cell:
            assert lsb["max_lsb"] == 0 and lsb["lsb"] == 0, (cell, lsb)


def test_sample_rows_spread_over_the_whole_test_split(parity_matrix):
    """The slow cells (streaming, emulated devices) see golden + SAMPLE_TEST_ROWS test rows: they
    must be spread over the split, not its first windows (on watch the first 120 held 3 of 7 classes)."""
    from parity.inputs import spread_first
    from training.data import load_task
    for n, k in ((10, 4), (7, 7), (3, 10), (5, 0), (1000, 120)):
        order = spread_first(n, k)
        assert sorted(order.tolist()) == list(range(n))
        first = order[:min(k, n)]
        assert np.all(np.diff(first) > 0) and (k == 0 or n == 0 or (first[0] == 0 and first[-1] == n - 1))
        if 1 < k < n:
            assert np.diff(first).max() - np.diff(first).min() <= 1  # evenly spaced
    held = parity_matrix("gru").heldout
    test = load_task("fixture").X_test
    g, s = held.golden_rows, held.sample_rows
    sample = held.x_raw[g:s]
    assert len(test) > s - g > 0
    order = spread_first(len(test), s - g)
    assert np.array_equal(sample, test[order[:s - g]].astype(np.float32))
    assert np.array_equal(held.x_raw[g:], test[order].astype(np.float32))  # every test row, once


def test_trace_refuses_a_negative_sample_count(capsys):
    """`python -m parity.trace ... --sample-rows -5` silently dropped 5 of the golden rows."""
    from parity.trace import main
    assert main(["/nonexistent", "a", "b", "--sample-rows", "-5"]) == 2
    assert capsys.readouterr().err.strip() == "error: --sample-rows -5: pass 0 or more (a count of test-split rows)"
