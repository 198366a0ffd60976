"""The registered `qrnn` model: recipes, the state carried across BPTT windows and in generation,
and which randomness is on in training and off in evaluation."""
import pytest
import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from awd_fairseq.models.qrnn import QRNNLanguageModel
from awd_fairseq.modules.qrnn import QRNNLayer
from awd_fairseq.modules.stream_state import StreamState

NO_DROPOUT = ["--dropout", "0", "--dropouth", "0", "--dropouti", "0", "--dropoute", "0", "--wdrop", "0"]


def parse(data_bin, arch, *extra):
    parser = options.get_training_parser()
    return options.parse_args_and_arch(
        parser, [str(data_bin), "--task", "awd_language_modeling", "--arch", arch, "--cpu", *extra]
    )


def build(data_bin, *extra, arch="qrnn"):
    args = parse(data_bin, arch, "--emsize", "16", "--nhid", "24", "--nlayers", "3", *extra)
    task = tasks.setup_task(args)
    torch.manual_seed(0)
    return task, task.build_model(args)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def model_flags(args):
    """The model options as the model receives them (the arch's values over the dataclass's)."""
    cfg = convert_namespace_to_omegaconf(args).model
    names = ("emsize", "nhid", "nlayers", "dropout", "dropouth", "dropouti", "dropoute", "wdrop", "zoneout", "tied")
    return {n: cfg[n] for n in names}


PTB_QRNN = dict(emsize=400, nhid=1550, nlayers=4, dropout=0.4, dropouth=0.3, dropouti=0.4, dropoute=0.1,
                wdrop=0.1, zoneout=0.0, tied=True)


def test_named_architectures_are_the_original_recipes(tiny_bin):
    assert model_flags(parse(tiny_bin, "qrnn")) == PTB_QRNN
    assert model_flags(parse(tiny_bin, "qrnn_wt2")) == dict(PTB_QRNN, dropouth=0.2)
    assert model_flags(parse(tiny_bin, "qrnn_wt103")) == dict(
        PTB_QRNN, nhid=2500, dropout=0.1, dropouth=0.1, dropouti=0.1, dropoute=0.0, wdrop=0.0
    )
    # flags given on the command line win over the named architecture
    given = model_flags(parse(tiny_bin, "qrnn_wt103", "--dropouth", "0.3", "--zoneout", "0.1"))
    assert (given["dropouth"], given["zoneout"], given["nhid"]) == (0.3, 0.1, 2500)


def test_layers_window_two_then_one_with_output_gate(tiny_bin):
    _, model = build(tiny_bin, "--wdrop", "0.2", "--zoneout", "0.1")
    assert isinstance(model, QRNNLanguageModel)
    layers = model.decoder.layers
    assert all(isinstance(layer, QRNNLayer) and layer.output_gate and layer.zoneout == 0.1 for layer in layers)
    assert [layer.window for layer in layers] == [2, 1, 1]
    assert [(layer.input_size, layer.hidden_size) for layer in layers] == [(16, 24), (24, 24), (24, 16)]
    assert [layer.linear.weight.shape for layer in layers] == [(72, 32), (72, 24), (48, 24)]
    assert all(layer.linear.parametrizations.weight[0].p == 0.2 for layer in layers)  # weight drop on the gates


def stream_windows(model, tokens, bounds):
    """Run `tokens` (B, T) as consecutive windows through one StreamState, as the task does."""
    state, outputs = StreamState(), []
    for start, end in bounds:
        state.seek(start)
        outputs.append(model(tokens[:, start:end], stream_state=state)[0])
        state.commit(end)
    return torch.cat(outputs, dim=1), state


def test_windows_with_carried_state_equal_one_long_window(tiny_bin):
    _, model = build(tiny_bin)
    model.eval()
    tokens = torch.randint(4, 50, (3, 12))
    whole = model(tokens)[0]
    pieces, state = stream_windows(model, tokens, [(0, 5), (5, 9), (9, 12)])
    torch.testing.assert_close(pieces, whole)
    assert sorted(state.hidden) == ["0.c", "0.prev_x", "1.c", "2.c"]
    # the first layer's carried input is the embedding of the previous window's last token
    embedding = model.decoder.embed_tokens(tokens[:, -1])
    torch.testing.assert_close(state.hidden["0.prev_x"], embedding)
    assert not any(t.requires_grad for t in state.hidden.values())  # detached between windows


def after_first_window(model, tokens, end):
    state = StreamState()
    state.seek(0)
    model(tokens[:, :end], stream_state=state)
    state.commit(end)
    state.seek(end)
    return state


def test_window_two_sees_the_previous_windows_last_token(tiny_bin):
    _, model = build(tiny_bin)
    model.eval()
    tokens = torch.randint(4, 50, (2, 8))
    expected = model(tokens)[0][:, 4:]
    torch.testing.assert_close(model(tokens[:, 4:], stream_state=after_first_window(model, tokens, 4))[0], expected)
    # the same cells, but the carried input of a first window whose last token differs: the
    # second window's first step changes (through its window-2 input, nothing else differs)
    other = tokens.clone()
    other[:, 3] = tokens[:, 3] % 40 + 5
    swapped = after_first_window(model, tokens, 4)
    swapped.hidden = dict(swapped.hidden, **{"0.prev_x": after_first_window(model, other, 4).hidden["0.prev_x"]})
    changed = model(tokens[:, 4:], stream_state=swapped)[0]
    assert not torch.allclose(changed[:, 0], expected[:, 0])
    # as does forgetting it (zeros: what every window would see if prev_x were not carried)
    forgotten = after_first_window(model, tokens, 4)
    forgotten.hidden = dict(forgotten.hidden, **{"0.prev_x": torch.zeros_like(forgotten.hidden["0.prev_x"])})
    assert not torch.allclose(model(tokens[:, 4:], stream_state=forgotten)[0][:, 0], expected[:, 0])


def test_state_is_reset_at_the_start_of_a_pass(tiny_bin):
    _, model = build(tiny_bin)
    model.eval()
    tokens = torch.randint(4, 50, (2, 10))
    _, state = stream_windows(model, tokens, [(0, 5), (5, 10)])
    assert state.hidden is not None
    state.seek(0)  # a new epoch or validation pass: c and prev_x both start from zeros
    torch.testing.assert_close(model(tokens[:, :5], stream_state=state)[0], model(tokens[:, :5])[0])


@pytest.mark.parametrize("batch", [1, 3])
def test_incremental_decoding_equals_the_full_forward(tiny_bin, batch):
    _, model = build(tiny_bin)
    model.eval()
    tokens = torch.randint(4, 50, (batch, 7))
    whole = model(tokens)[0]
    incremental_state = {}
    steps = []
    for t in range(1, 8):  # fairseq passes the whole prefix; the decoder reads only its last token
        steps.append(model.decoder(tokens[:, :t], incremental_state=incremental_state)[0])
    torch.testing.assert_close(torch.cat(steps, dim=1), whole)


def test_beam_reordering_moves_the_carried_input_too(tiny_bin):
    _, model = build(tiny_bin)
    model.eval()
    tokens = torch.randint(4, 50, (3, 6))
    order = torch.tensor([2, 0, 0])
    incremental_state = {}
    for t in range(1, 4):
        model.decoder(tokens[:, :t], incremental_state=incremental_state)
    model.decoder.reorder_incremental_state(incremental_state, order)
    continued = model.decoder(tokens[order, :4], incremental_state=incremental_state)[0]
    expected = model(tokens[order, :4])[0][:, -1:]
    torch.testing.assert_close(continued, expected)


def test_weight_drop_and_zoneout_on_in_training_off_in_evaluation(tiny_bin):
    _, model = build(tiny_bin, *NO_DROPOUT[:-2], "--wdrop", "0.5", "--zoneout", "0.3")
    tokens = torch.randint(4, 50, (2, 6))
    model.train()
    assert not torch.equal(model(tokens)[0], model(tokens)[0])
    model.eval()
    evaluated = model(tokens)[0]
    assert torch.equal(model(tokens)[0], evaluated)
    # evaluation uses the raw weights and f's expectation zoneout + (1 - zoneout) f: a model
    # without weight drop, with the same raw weights, gives the same output
    _, plain = build(tiny_bin, *NO_DROPOUT, "--zoneout", "0.3")
    raw = {k.replace("parametrizations.weight.original", "weight"): v for k, v in model.state_dict().items()}
    plain.load_state_dict(raw)
    plain.eval()
    torch.testing.assert_close(plain(tokens)[0], evaluated)
    # and without either, training is deterministic: the randomness above is theirs
    deterministic = build(tiny_bin, *NO_DROPOUT)[1].train()
    assert torch.equal(deterministic(tokens)[0], deterministic(tokens)[0])
