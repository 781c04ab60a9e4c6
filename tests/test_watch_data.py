"""The real ``watch`` dataset: subject splits, the train-on-validation option and the dev folds."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import UserError
from training.config import load_config
from training.cv import SUBJECTS, folds
from training.data.watch import TEST_SUBJECTS, VAL_SUBJECTS, load_watch, read_recordings, window


@pytest.fixture(scope="module")
def recordings():
    return read_recordings()


def windows_of(recordings, subjects) -> int:
    recs, _, subj, _, _ = recordings
    return sum(len(window(np.asarray(r), 100, 50)) for r, s in zip(recs, subj) if s in subjects)


def test_splits_hold_whole_subjects(recordings):
    d = load_watch()
    train_subjects = set(SUBJECTS) - set(TEST_SUBJECTS) - set(VAL_SUBJECTS)
    assert len(d.X_test) == windows_of(recordings, TEST_SUBJECTS)
    assert len(d.X_val) == windows_of(recordings, VAL_SUBJECTS)
    assert len(d.X_train) == windows_of(recordings, train_subjects)
    assert d.X_train.shape[1:] == (100, 6) and d.info["test_subjects"] == list(TEST_SUBJECTS)
    recs, _, subj, _, _ = recordings  # each test window names the recording it was cut from
    assert set(subj[np.unique(d.recordings_test)].tolist()) == set(TEST_SUBJECTS)
    for r in np.unique(d.recordings_test)[[0, -1]]:
        np.testing.assert_array_equal(d.X_test[d.recordings_test == r], window(np.asarray(recs[r], np.float32), 100, 50))


def test_val_in_train_adds_exactly_the_validation_windows():
    base, more = load_watch(), load_watch(val_in_train=True)
    assert len(more.X_train) == len(base.X_train) + len(base.X_val)
    np.testing.assert_array_equal(more.X_val, base.X_val)
    np.testing.assert_array_equal(more.X_test, base.X_test)  # the test subjects stay out
    # every validation window is now also a training window
    train_rows = {w.tobytes() for w in more.X_train}
    assert all(w.tobytes() in train_rows for w in base.X_val)


def test_magnitude_features_append_the_two_norms_and_keep_the_raw_channels():
    base, mag = load_watch(), load_watch(features="magnitude")
    assert mag.X_train.shape == base.X_train.shape[:2] + (8,) and mag.info["channels"][6:] == ["acc_norm", "gyro_norm"]
    for X, Y in ((base.X_train, mag.X_train), (base.X_test, mag.X_test)):
        np.testing.assert_array_equal(Y[..., :6], X)
        np.testing.assert_allclose(Y[..., 6], np.linalg.norm(X[..., 0:3], axis=-1), rtol=1e-6)
        np.testing.assert_allclose(Y[..., 7], np.linalg.norm(X[..., 3:6], axis=-1), rtol=1e-6)
    rot = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0]  # a watch worn rotated
    turned = np.concatenate([base.X_test[0][:, :3] @ rot.T, base.X_test[0][:, 3:] @ rot.T], 1)
    from runtime.imu_features import imu_features
    np.testing.assert_allclose(imu_features(turned, "magnitude")[:, 6:], mag.X_test[0][:, 6:], rtol=1e-5)


def test_train_overlap_windows_only_the_training_split_more_densely(recordings):
    base, dense = load_watch(val_in_train=True), load_watch(val_in_train=True, train_overlap=0.75)
    np.testing.assert_array_equal(dense.X_val, base.X_val)  # evaluation splits keep `overlap`
    np.testing.assert_array_equal(dense.X_test, base.X_test)
    recs, _, subj, _, _ = recordings
    trained = set(SUBJECTS) - set(TEST_SUBJECTS)  # the validation subject is trained on too
    assert len(dense.X_train) == sum(len(window(np.asarray(r), 100, 25)) for r, s in zip(recs, subj) if s in trained)
    assert dense.info["train_hop"] == 25 and dense.info["hop"] == 50
    # the 50%-overlap training windows are a subset of the denser ones
    dense_rows = {w.tobytes() for w in dense.X_train}
    assert all(w.tobytes() in dense_rows for w in base.X_train)
    with pytest.raises(UserError, match="train_overlap = 1.0"):
        load_watch(train_overlap=1.0)


def test_dev_folds_never_touch_the_test_subjects():
    dev = tuple(s for s in SUBJECTS if s not in TEST_SUBJECTS)
    fs = folds(4, dev)
    held_out = [s for test, _ in fs for s in test]
    assert sorted(held_out) == sorted(dev)  # each dev subject is held out exactly once
    for test, val in fs:
        assert not set(test) & set(TEST_SUBJECTS) and not set(val) & set(TEST_SUBJECTS)
        assert not set(test) & set(val)


def test_every_fold_count_holds_every_subject_out_once_and_the_even_folds_stay_as_published():
    """Audit: --folds 3 (and 4, 6, --dev 3, 5, ...) dropped the subjects left over by len // k: never tested."""
    dev = tuple(s for s in SUBJECTS if s not in TEST_SUBJECTS)
    for subjects in (SUBJECTS, dev):
        for k in range(2, len(subjects) + 1):
            fs = folds(k, subjects)
            assert sorted(s for test, _ in fs for s in test) == sorted(subjects), (k, fs)
            assert all(len(val) == 1 and not set(val) & set(test) for test, val in fs), (k, fs)
    assert [len(test) for test, _ in folds(3)] == [3, 3, 4]
    # the folds the published figures were measured on
    assert folds(5) == [((1, 2), (3,)), ((3, 4), (5,)), ((5, 6), (7,)), ((7, 8), (9,)), ((9, 10), (1,))]
    assert folds(10) == [((s,), (s % 10 + 1,)) for s in SUBJECTS]
    assert folds(4, dev) == [((1, 3), (4,)), ((4, 5), (6,)), ((6, 8), (9,)), ((9, 10), (1,))]


def test_keep_mode_is_checked():
    with pytest.raises(UserError, match="keep mode"):
        load_config("watch", keep="sometimes")


def test_mirror_options_are_checked():
    with pytest.raises(UserError, match="probability"):
        load_config("watch", mirror=1.5)
    with pytest.raises(UserError, match="needs augment"):
        load_config("watch", augment="basic", mirror=0.5)
    with pytest.raises(UserError, match="reverse = 2.0 is a probability"):
        load_config("watch", reverse=2.0)
    for option in ("reverse", "roll_deg", "tempo"):
        with pytest.raises(UserError, match=f"{option} = 0.5 changes IMU windows and needs augment"):
            load_config("watch", arch="lstm", augment="basic", mirror=0.0, **{option: 0.5})


@pytest.mark.parametrize("option,value,expect", [
    ("epochs", 0, "epochs = 0 is out of range"), ("batch_size", 0, "batch_size"), ("lr", 0.0, "learning rate"),
    ("grad_clip", 0.0, "gradient-norm"), ("dropout", 1.0, "below 1"), ("threads", 0, "threads"),
    ("rotate_deg", -5.0, "0 to 180"), ("roll_deg", 200.0, "0 to 180"), ("tempo", 1.5, "0.5x to 2x"), ("patience", 0, "patience"), ("max_minutes", 0.0, "minutes"),
])
def test_training_options_out_of_range_are_one_clear_error(option, value, expect):
    with pytest.raises(UserError, match=expect):
        load_config("watch", **{option: value})


def test_time_shift_none_keeps_every_frame_in_place():
    """The default augmentation rotates a window circularly in time; ``time_shift="none"`` keeps each
    frame where it was (only gain and noise change it), and an unknown mode is one clear error."""
    import torch
    from training.augment import augment_batch
    x = torch.zeros(4, 50, 3)
    x[:, 10] = 100.0  # one spike per window, far above the noise
    peaks = {mode: augment_batch(x, torch.Generator().manual_seed(3), "basic", time_shift=mode)[0].abs().sum(1).argmax()
             for mode in ("circular", "none")}
    assert peaks["none"] == 10 and peaks["circular"] != 10
    with pytest.raises(UserError, match="choose circular or none"):
        load_config("watch", time_shift="sometimes")


@pytest.mark.parametrize("options,expect", [
    ({"overlap": 1.0}, "below 1"), ({"window_s": 0.01}, "fewer than 2 samples"), ({"decimation": 0}, "decimation"),
    ({"test_subjects": ()}, "one or more of the subjects"), ({"test_subjects": (11,)}, "one or more of the subjects"),
    ({"val_subjects": (2,)}, "in both test_subjects and val_subjects"),
    ({"test_subjects": tuple(range(1, 10)), "val_subjects": (10,)}, "no subject to train on"),
    ({"features": "jerk"}, "choose one of raw, magnitude"),
])
def test_impossible_windows_or_splits_are_one_clear_error(options, expect):
    with pytest.raises(UserError, match=expect):
        load_watch(**options)


def _rotating_watch(omega: np.ndarray, a0: np.ndarray, steps: int = 200, dt: float = 0.01):
    """Body-frame gravity of a watch spinning at constant body rate ``omega``: da/dt = -omega x a."""
    k = np.array([[0, -omega[2], omega[1]], [omega[2], 0, -omega[0]], [-omega[1], omega[0], 0]])
    w, v = np.linalg.eig(-k)  # exp(-K t) through the eigen-decomposition (K is normal)
    ts = np.arange(steps) * dt
    return np.stack([(v @ np.diag(np.exp(w * t)) @ np.linalg.inv(v)).real @ a0 for t in ts]), dt


def test_mirror_to_other_wrist_obeys_the_kinematics():
    """The mirrored window must be a physically possible recording: its accelerometer (gravity in
    the watch frame) and gyroscope still satisfy da/dt = -w x a. Negating wx (treating the
    angular rate as a polar vector) breaks that, so this test would catch the wrong signs."""
    import torch

    from training.augment import mirror_to_other_wrist
    omega, a0 = np.array([0.7, -1.3, 0.4]), np.array([0.2, 0.9, -0.4])
    acc, dt = _rotating_watch(omega, a0)
    raw = torch.from_numpy(np.concatenate([acc, np.tile(omega, (len(acc), 1))], 1)[None])
    mirrored = mirror_to_other_wrist(raw)[0].numpy()
    assert np.array_equal(mirror_to_other_wrist(mirror_to_other_wrist(raw)).numpy(), raw.numpy())

    def residual(a, w):
        da = (a[2:] - a[:-2]) / (2 * dt)
        return np.abs(da + np.cross(w[1:-1], a[1:-1])).max()

    assert residual(acc, raw[0, :, 3:].numpy()) < 1e-3  # the synthetic recording itself is consistent
    assert residual(mirrored[:, :3], mirrored[:, 3:]) < 1e-3
    polar = mirrored[:, 3:] * np.array([-1.0, -1.0, -1.0])  # (-wx, wy, wz): the naive sign choice
    assert residual(mirrored[:, :3], polar) > 0.1


def test_played_backwards_and_rolled_windows_obey_the_kinematics():
    """A window played backwards (gyroscope negated) and one rolled about the forearm axis are
    physically possible recordings too (da/dt = -w x a); reversing without negating the gyroscope
    is not, so this test would catch the wrong sign."""
    import torch

    from training.augment import play_backwards, rotations_about_x
    omega, a0 = np.array([0.7, -1.3, 0.4]), np.array([0.2, 0.9, -0.4])
    acc, dt = _rotating_watch(omega, a0)
    raw = torch.from_numpy(np.concatenate([acc, np.tile(omega, (len(acc), 1))], 1)[None])

    def residual(a, w):
        da = (a[2:] - a[:-2]) / (2 * dt)
        return np.abs(da + np.cross(w[1:-1], a[1:-1])).max()

    back = play_backwards(raw)[0].numpy()
    assert np.array_equal(play_backwards(play_backwards(raw)).numpy(), raw.numpy())
    assert residual(back[:, :3], back[:, 3:]) < 1e-3
    assert residual(back[:, :3], -back[:, 3:]) > 0.1  # time reversed, gyroscope kept: impossible
    rot = rotations_about_x(5, 30.0, torch.Generator().manual_seed(0)).double()
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(5, 3, 3), atol=1e-6)
    assert torch.all(rot[:, 0, 0] == 1) and torch.all(rot[:, 1:, 1:].diagonal(dim1=1, dim2=2) >= np.cos(np.pi / 6) - 1e-6)
    for r in rot:
        rolled = torch.cat([raw[0, :, :3] @ r.T, raw[0, :, 3:] @ r.T], 1).numpy()
        assert residual(rolled[:, :3], rolled[:, 3:]) < 1e-3


def test_a_change_of_tempo_obeys_the_kinematics():
    """A window played s times as fast, its gyroscope multiplied by s, is a physically possible
    recording (da/dt = -w x a), slower or faster (the faster one checked where it has not wrapped
    round); resampling without scaling the gyroscope is not, so this test catches a missing factor."""
    import torch

    from training.augment import augment_batch, change_tempo
    omega, a0 = np.array([0.7, -1.3, 0.4]), np.array([0.2, 0.9, -0.4])
    acc, dt = _rotating_watch(omega, a0)
    raw = torch.from_numpy(np.concatenate([acc, np.tile(omega, (len(acc), 1))], 1)[None]).repeat(3, 1, 1)

    def residual(a, w):
        da = (a[2:] - a[:-2]) / (2 * dt)
        return np.abs(da + np.cross(w[1:-1], a[1:-1])).max()

    speeds = torch.tensor([1.0, 0.8, 1.25], dtype=torch.float64)
    out = change_tempo(raw, speeds).numpy()
    assert np.array_equal(out[0], raw[0].numpy())  # speed 1: unchanged
    middle = slice(30, 170)  # 1.25x reads samples 12.4 to 187.6 there: no wrap
    for i, s in ((1, 0.8), (2, 1.25)):
        a, w = out[i, middle, :3], out[i, middle, 3:]
        assert np.allclose(w, omega * s)
        assert residual(a, w) < 1e-3
        assert residual(a, w / s) > 0.1  # resampled, gyroscope not scaled: impossible
    x = torch.randn(4, 100, 6)
    mean, std = torch.zeros(6), torch.ones(6)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(augment_batch(x, gen(), "imu", mean, std), augment_batch(x, gen(), "imu", mean, std, tempo=0.0))
    assert not torch.equal(augment_batch(x, gen(), "imu", mean, std), augment_batch(x, gen(), "imu", mean, std, tempo=0.2))


def test_arch_tables_override_the_file_for_that_arch_only(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('task = "watch"\nepochs = 60\n[data]\nval_in_train = true\n'
                   '[lstm]\nepochs = 100\n[lstm.data]\nwindow_s = 3.0\n[gru]\nlr = 1e-3\n')
    lstm, gru = load_config("watch", str(cfg), arch="lstm"), load_config("watch", str(cfg), arch="gru")
    assert (lstm.epochs, lstm.lr, lstm.data) == (100, 3e-3, {"val_in_train": True, "window_s": 3.0})
    assert (gru.epochs, gru.lr, gru.data) == (60, 1e-3, {"val_in_train": True})
    assert load_config("watch", str(cfg), arch="lstm", epochs=7).epochs == 7  # the command line wins
    shipped_lstm, shipped_gru = load_config("watch", arch="lstm"), load_config("watch", arch="gru")
    assert (shipped_lstm.epochs, shipped_lstm.data) == (50, {"val_in_train": True, "train_overlap": 0.75})
    assert (shipped_gru.epochs, shipped_gru.data, shipped_gru.roll_deg) == (60, {"val_in_train": True}, 30)
    assert shipped_lstm.roll_deg == 0


def test_per_subject_accuracies_add_up_to_the_test_accuracy(tmp_path):
    """`python -m training.subjects RUN`: each test subject alone, with the checkpoint's [data]
    options; weighted by their windows they give back the run's own test accuracy."""
    from training.subjects import main, per_subject
    from training.trainer import train
    cfg = load_config("watch", arch="lstm", hidden=(8,), epochs=1, swa=0, out=str(tmp_path / "run"))
    metrics = train(cfg, resume=False, progress=False)
    accs = per_subject(tmp_path / "run")
    assert sorted(accs) == sorted(TEST_SUBJECTS)
    sizes = {s: len(load_watch(val_in_train=True, test_subjects=(s,)).y_test) for s in accs}
    mixed = sum(accs[s] * sizes[s] for s in accs) / sum(sizes.values())
    assert mixed == pytest.approx(metrics["test_acc"], abs=1e-9)
    assert main([str(tmp_path / "missing")]) == 2
    # --recordings: the 28 test recordings (7 exercises x 2 wrists x 2 subjects), their windows and
    # errors adding up to the split's, each recording's accuracy that of its own windows
    from training.subjects import per_recording, recordings_table
    rows = per_recording(tmp_path / "run")
    assert len(rows) == 28 and {(r["subject"], r["exercise"], r["wrist"]) for r in rows} == {
        (s, e, w) for s in TEST_SUBJECTS for e in load_watch().class_names for w in (0, 1)}
    assert sum(r["windows"] for r in rows) == sum(sizes.values())
    errors = sum(r["errors"] for r in rows)
    assert 1 - errors / sum(sizes.values()) == pytest.approx(metrics["test_acc"], abs=1e-9)
    assert [r["errors"] for r in rows] == sorted((r["errors"] for r in rows), reverse=True)
    assert all((r["taken_for"] == "") == (r["errors"] == 0) and r["taken_for"] != r["exercise"] for r in rows)
    table = recordings_table(rows).splitlines()
    assert len(table) == 1 + 28 + 3 and table[-3].startswith(f"{errors} errors in {sum(sizes.values())} windows")
    assert table[-2] == "errors by subject: " + ", ".join(
        f"{s}: {round((1 - accs[s]) * sizes[s])}" for s in sorted(TEST_SUBJECTS))
    assert table[-1].startswith("rank correlation of posture offset and accuracy over the 28 recordings: ")


def test_cv_fold_option_names_the_valid_folds(capsys):
    from training.cv import main
    assert main(["--dev", "--fold", "4"]) == 2
    assert capsys.readouterr().err.strip() == "error: --fold 4: choose 0 to 3"


def test_mixup_draws_and_mixes_windows_and_labels():
    """Beta(a, a) draws from the seeded generator have the distribution's mean and spread (a = 0.4:
    mean 1/2, variance 1 / (4 (2a + 1)) = 0.1389), and each mixed window is the same convex
    combination of two windows of the batch as its soft target is of their one-hot labels."""
    import torch
    from training.augment import beta_draws, mix_windows
    lam = beta_draws(20000, 0.4, torch.Generator().manual_seed(0))
    assert ((lam >= 0) & (lam <= 1)).all()
    assert abs(lam.mean().item() - 0.5) < 0.01 and abs(lam.var().item() - 1 / (4 * 1.8)) < 0.01
    assert torch.equal(beta_draws(50, 0.4, torch.Generator().manual_seed(5)),
                       beta_draws(50, 0.4, torch.Generator().manual_seed(5)))
    x = torch.randn(6, 4, 2, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    xm, ym = mix_windows(x, y, 3, 0.4, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)  # the same draws, in mix_windows' order: weights, then partners
    lam, j = beta_draws(6, 0.4, g), torch.randperm(6, generator=g)
    assert torch.allclose(xm, lam[:, None, None] * x + (1 - lam[:, None, None]) * x[j])
    onehot = torch.eye(3)[y]
    assert torch.allclose(ym, lam[:, None] * onehot + (1 - lam[:, None]) * onehot[j])
    assert torch.allclose(ym.sum(1), torch.ones(6)) and not torch.equal(xm, x)


def test_mixup_option_is_checked():
    with pytest.raises(UserError, match="mixup = -1.0 is out of range"):
        load_config("watch", mixup=-1.0)
