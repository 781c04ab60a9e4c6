"""Models: the streaming path gives the whole-sequence outputs; specs validate."""

import pytest
import torch

from runtime.errors import UserError
from training.models import ModelSpec, SequenceModel


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("hidden", [(16,), (32, 32), (24, 12, 8)])
def test_streaming_equals_whole_sequence(arch, hidden):
    torch.manual_seed(0)
    model = SequenceModel(ModelSpec(arch, 5, hidden, 4)).eval()
    x = torch.randn(3, 40, 5)
    with torch.no_grad():
        whole = model(x)
        per_step = model.stream(x)
        # every prefix: the streaming score after t frames is the whole-sequence score of x[:, :t]
        for t in (1, 7, 40):
            assert torch.allclose(per_step[:, t - 1], model(x[:, :t]), atol=1e-5)
    assert torch.allclose(per_step[:, -1], whole, atol=1e-5)


def test_reset_state_restarts_the_stream():
    torch.manual_seed(1)
    model = SequenceModel(ModelSpec("gru", 3, (8,), 2)).eval()
    x = torch.randn(1, 10, 3)
    with torch.no_grad():
        state = model.init_state(1)
        for t in range(10):
            y_carried, state = model.step(x[:, t], state)
        y_fresh, _ = model.step(x[:, 0], model.init_state(1))
        y_first, _ = model.step(x[:, 0], model.init_state(1))
    assert torch.equal(y_fresh, y_first)
    assert not torch.allclose(y_carried, y_fresh)


def test_macs_per_step():
    # LSTM: 4 gates * H * (In + H) per layer
    assert ModelSpec("lstm", 6, (32, 32), 7).macs_per_step() == 4 * 32 * 38 + 4 * 32 * 64
    assert ModelSpec("gru", 6, (32,), 7).macs_per_step() == 3 * 32 * 38


@pytest.mark.parametrize("bad", [dict(arch="rnn"), dict(hidden_sizes=()), dict(hidden_sizes=(0,)), dict(input_size=0)])
def test_bad_specs_are_user_errors(bad):
    kw = dict(arch="gru", input_size=3, hidden_sizes=(4,), num_classes=2) | bad
    with pytest.raises(UserError):
        ModelSpec(**kw)
