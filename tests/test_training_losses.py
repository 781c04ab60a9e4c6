"""Training-only loss options: subject-adversarial training (training/adversary.py: the gradient reversal, the
ramp, training, resuming, the exported model left as it is) and target replication."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from runtime.errors import UserError
from training.adversary import SubjectAdversary, reverse_gradient, reversal_weight, subject_indices
from training.checkpoint import load_model, load_train_state
from training.config import load_config
from training.data.watch import TEST_SUBJECTS, VAL_SUBJECTS, load_watch
from training.models import SequenceModel
from training.trainer import train


def test_reversal_is_identity_forward_and_flips_and_scales_the_gradient():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([-0.5, -1.0, -1.5]))


def test_the_adversary_learns_the_subjects_while_its_input_is_pushed_the_other_way():
    """One step: the classifier's own weights move to lower its loss; the features it reads get the
    gradient that would raise it (the features learn to hide the subject)."""
    torch.manual_seed(0)
    adv = SubjectAdversary(4, 3)
    h = torch.randn(16, 4, requires_grad=True)
    who = torch.arange(16) % 3
    loss = torch.nn.functional.cross_entropy(adv(h, 1.0), who)
    loss.backward()
    plain = h.detach().clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(adv.net(plain), who).backward()
    torch.testing.assert_close(h.grad, -plain.grad)


def test_ramp_starts_at_zero_and_reaches_the_scale():
    assert reversal_weight(0.0, 0.3) == 0.0
    assert reversal_weight(1.0, 0.3) == pytest.approx(0.3 * (2 / (1 + math.exp(-10)) - 1))
    assert reversal_weight(2.0, 0.3) == reversal_weight(1.0, 0.3)  # clamped
    ws = [reversal_weight(p / 10, 1.0) for p in range(11)]
    assert all(a < b for a, b in zip(ws, ws[1:]))


def test_subject_indices_renumber_the_ids():
    idx, n = subject_indices(np.array([9, 3, 3, 9, 4]))
    assert n == 3 and idx.tolist() == [2, 0, 0, 2, 1]


@pytest.mark.parametrize("val_in_train", [False, True])
def test_watch_training_windows_carry_their_subject(val_in_train):
    d = load_watch(val_in_train=val_in_train)
    held = set(TEST_SUBJECTS) | (set() if val_in_train else set(VAL_SUBJECTS))
    assert d.groups_train.shape == (len(d.X_train),)
    assert set(d.groups_train.tolist()) == set(range(1, 11)) - held
    # a window's subject is the one whose recordings it was cut from: compare with subject 1 trained on alone
    alone = load_watch(test_subjects=tuple(range(3, 11)), val_subjects=(2,))
    assert set(alone.groups_train.tolist()) == {1}
    rows = {w.tobytes() for w in alone.X_train}
    mine = d.X_train[d.groups_train == 1]
    assert len(mine) == len(alone.X_train) and all(w.tobytes() in rows for w in mine)


def test_watch_trains_with_the_adversary_resumes_and_exports_only_the_model(tmp_path):
    kw = dict(arch="gru", epochs=2, swa=0, subject_adversary=0.5)
    first = train(load_config("watch", out=str(tmp_path / "a"), max_minutes=1e-9, **kw), resume=False, progress=False)
    assert len(first["history"]) == 1  # stopped by the time budget after one epoch
    state = load_train_state(tmp_path / "a" / "train_state.pt")
    assert state["adversary"] and all(k.startswith("net.") for k in state["adversary"])
    m = train(load_config("watch", out=str(tmp_path / "a"), **kw), resume=True, progress=False)
    assert [h["epoch"] for h in m["history"]] == [0, 1] and 0 <= m["test_acc"] <= 1
    model, meta = load_model(tmp_path / "a" / "model.safetensors")
    assert model.state_dict().keys() == SequenceModel(model.spec).state_dict().keys()  # the adversary stays behind
    assert meta["config"]["subject_adversary"] == 0.5
    # the option changes the training: the same run without it ends with other weights
    off = train(load_config("watch", out=str(tmp_path / "b"), **{**kw, "subject_adversary": 0.0}),
                resume=False, progress=False)
    other, _ = load_model(tmp_path / "b" / "model.safetensors")
    assert "subject_loss" not in off["history"][0]
    assert 0 < m["history"][0]["subject_loss"] < 2 * math.log(8)  # 8 training subjects: ln 8 when guessing
    assert not torch.equal(other.head.weight, model.head.weight)


def test_adversary_refuses_mixup_and_other_heads(tmp_path):
    with pytest.raises(UserError, match="mixes windows of two subjects"):
        train(load_config("watch", arch="gru", out=str(tmp_path / "m"), epochs=1, swa=0, subject_adversary=0.3, mixup=0.2),
              resume=False, progress=False)
    with pytest.raises(UserError, match="needs a classification task"):
        train(load_config("watch-forecast", arch="gru", out=str(tmp_path / "f"), epochs=1, subject_adversary=0.3),
              resume=False, progress=False)


def test_target_replication_mixes_the_last_step_with_the_second_half():
    """``replicated_target_loss``: weight 0 is the plain last-step loss; weight 1 the mean loss of the
    second half's steps, each asked for the window's label; the first half never counts."""
    from training.trainer import replicated_target_loss
    torch.manual_seed(0)
    logits, y = torch.randn(3, 6, 4), torch.tensor([0, 2, 3])
    ce = torch.nn.functional.cross_entropy
    torch.testing.assert_close(replicated_target_loss(logits, y, 0.0), ce(logits[:, -1], y))
    half = torch.stack([ce(logits[:, t], y) for t in (3, 4, 5)]).mean()
    torch.testing.assert_close(replicated_target_loss(logits, y, 1.0), half)
    torch.testing.assert_close(replicated_target_loss(logits, y, 0.5), 0.5 * ce(logits[:, -1], y) + 0.5 * half)
    early = logits.clone()
    early[:, :3] = 100 * torch.randn(3, 3, 4)  # the first half changes nothing
    torch.testing.assert_close(replicated_target_loss(early, y, 0.5), replicated_target_loss(logits, y, 0.5))


def test_target_replication_trains_watch_and_refuses_other_heads(tmp_path):
    m = train(load_config("watch", arch="gru", out=str(tmp_path / "r"), epochs=1, swa=0, target_replication=0.5),
              resume=False, progress=False)
    plain = train(load_config("watch", arch="gru", out=str(tmp_path / "p"), epochs=1, swa=0), resume=False, progress=False)
    assert m["history"][0]["train_loss"] != plain["history"][0]["train_loss"]
    model, _ = load_model(tmp_path / "r" / "model.safetensors")
    assert model.state_dict().keys() == SequenceModel(model.spec).state_dict().keys()
    with pytest.raises(UserError, match="needs a classification head read at the last step"):
        train(load_config("watch-frames", arch="gru", out=str(tmp_path / "f"), epochs=1, target_replication=0.5),
              resume=False, progress=False)
    with pytest.raises(UserError, match="mixup"):
        train(load_config("watch", arch="gru", out=str(tmp_path / "m"), epochs=1, swa=0, target_replication=0.5, mixup=0.2),
              resume=False, progress=False)
