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


def test_val_in_train_adds_exactly_the_validation_windows():
    base, more = load_watch(), load_watch(val_in_train=True)
    assert len(more.X_train) == len(base.X_train) + len(base.X_val)
    np.testing.assert_array_equal(more.X_val, base.X_val)
    np.testing.assert_array_equal(more.X_test, base.X_test)  # the test subjects stay out
    # every validation window is now also a training window
    train_rows = {w.tobytes() for w in more.X_train}
    assert all(w.tobytes() in train_rows for w in base.X_val)


def test_dev_folds_never_touch_the_test_subjects():
    dev = tuple(s for s in SUBJECTS if s not in TEST_SUBJECTS)
    fs = folds(4, dev)
    held_out = [s for test, _ in fs for s in test]
    assert sorted(held_out) == sorted(dev)  # each dev subject is held out exactly once
    for test, val in fs:
        assert not set(test) & set(TEST_SUBJECTS) and not set(val) & set(TEST_SUBJECTS)
        assert not set(test) & set(val)


def test_keep_mode_is_checked():
    with pytest.raises(UserError, match="keep mode"):
        load_config("watch", keep="sometimes")
