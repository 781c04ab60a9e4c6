"""Shared fixtures: small models trained once per test session on the fixture task.

Tests that need a trained model or an exported artifact folder use these instead of training
their own, so the suite stays fast.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

ARCHS = ("lstm", "gru")


def train_fixture_model(out_dir, arch: str, hidden=(16, 16), epochs: int = 14):
    """Train a tiny model on the synthetic fixture task; returns the run folder."""
    from training.config import load_config
    from training.trainer import train
    cfg = load_config("fixture", arch=arch, out=str(out_dir), hidden=hidden, epochs=epochs)
    train(cfg, resume=False, progress=False)
    return out_dir


@pytest.fixture(scope="session", params=ARCHS)
def arch(request):
    return request.param


def once_per_key(make):
    """``get(key)`` that calls ``make(key)`` the first time and returns the same result after."""
    cache: dict = {}

    def get(key):
        if key not in cache:
            cache[key] = make(key)
        return cache[key]
    return get


@pytest.fixture(scope="session")
def fixture_run(tmp_path_factory):
    """``fixture_run(arch)`` -> run folder with model.safetensors for that architecture."""
    return once_per_key(lambda arch: train_fixture_model(tmp_path_factory.mktemp(f"run-{arch}"), arch))


@pytest.fixture(scope="session")
def fixture_artifacts(tmp_path_factory, fixture_run):
    """``fixture_artifacts(arch)`` -> artifact folder exported from the fixture model (all kinds)."""
    def make(arch: str):
        from export.pipeline import export_artifacts
        out = tmp_path_factory.mktemp(f"artifacts-{arch}") / "artifacts"
        export_artifacts(fixture_run(arch) / "model.safetensors", out, task="fixture", progress=False)
        return out
    return once_per_key(make)


@pytest.fixture(scope="session")
def config_run(tmp_path_factory):
    """``config_run(name)`` -> (run folder, metrics) of a GRU trained on ``configs/<name>.toml``, once."""
    def make(name: str):
        from training.config import load_config
        from training.trainer import train
        out = tmp_path_factory.mktemp(f"{name}-run")
        return out, train(load_config(name, arch="gru", out=str(out)), resume=False, progress=False)
    return once_per_key(make)


@pytest.fixture(scope="session")
def config_artifacts(tmp_path_factory, config_run):
    """``config_artifacts(name)`` -> (artifact folder, manifest) exported from ``config_run(name)``, once."""
    def make(name: str):
        from export.pipeline import export_artifacts
        out = tmp_path_factory.mktemp(f"{name}-artifacts") / "artifacts"
        return out, export_artifacts(config_run(name)[0] / "model.safetensors", out, progress=False)
    return once_per_key(make)


@pytest.fixture(scope="session")
def fixture_c_export(tmp_path_factory, fixture_run):
    """``fixture_c_export(arch)`` -> dict(model, meta, records, out, qm, quant, data, test_windows): the
    C export of the fixture model (both precisions) with the int8 model's quantization, once per
    session; ``test_windows(n)``: the first n test windows in the model's input space."""
    def make(arch: str):
        import numpy as np
        from export.c import export_c, prepare
        from training.checkpoint import load_model
        from training.data import load_task
        data = load_task("fixture")
        model, meta = load_model(fixture_run(arch))
        out = tmp_path_factory.mktemp(f"c-{arch}")
        records = export_c(model, meta, data, out)
        rec8 = next(r for r in records if r["name"] == "c-int8")
        _, quant, qm = prepare(model, meta, quant=rec8["quant"])
        mean, std = np.array(meta["input_mean"], np.float32), np.array(meta["input_std"], np.float32)
        return dict(model=model, meta=meta, records=records, out=out, qm=qm, quant=quant, data=data,
                    test_windows=lambda n: ((data.X_test[:n] - mean) / std).astype(np.float32))
    return once_per_key(make)
