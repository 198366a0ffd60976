"""Training-step speed of mogrifier_lstm, per step implementation (--mogrifier-step eager / script /
compile), against awd_lstm at the same parameter count, measured in one run.

A training step here is the forward pass of a whole model (embedding, two recurrent layers, tied
softmax) over one BPTT window, the mean NLL and its backward pass, with dropout on (train mode).
awd_lstm's hidden size is chosen so that its parameter count is the closest to the Mogrifier's.
The implementations are timed in interleaved rounds (every round times each once), and the
median tokens/s of the rounds is reported with its ratio to awd_lstm's. Sizes default to a
reduced PTB model; pass --hidden 912 --rank 84 --vocab 10000 --batch 64 --bptt 70 for lamb's.

    OMP_NUM_THREADS=1 python scripts/bench/bench_mogrifier.py
"""
import argparse
import logging
import statistics
import time

import torch
from fairseq.data import Dictionary

import awd_fairseq  # noqa: F401  (registers the models)
from awd_fairseq.models.awd_lstm import AWDLSTMModel, RecurrentLMConfig
from awd_fairseq.models.mogrifier_lstm import MogrifierLSTMConfig, MogrifierLSTMModel

logger = logging.getLogger("bench_mogrifier")


class _Task:
    def __init__(self, vocab):
        self.target_dictionary = self.source_dictionary = Dictionary()
        while len(self.target_dictionary) < vocab:
            self.target_dictionary.add_symbol(f"w{len(self.target_dictionary)}")


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def build_mogrifier(args, step):
    cfg = MogrifierLSTMConfig(emsize=args.hidden, nhid=args.hidden, nlayers=2, mogrifier_rounds=args.rounds,
                              mogrifier_rank=args.rank, mogrifier_step=step)
    return MogrifierLSTMModel.build_model(cfg, _Task(args.vocab))


def awd_lstm_params(vocab, emsize, nhid):
    """awd_lstm's parameters (2 layers, tied): the embedding, the output bias, two nn.LSTMs
    (4H x (in + H) weights and two 4H biases each) of sizes emsize -> nhid -> emsize."""
    def lstm(i, h):
        return 4 * h * (i + h) + 8 * h

    return vocab * emsize + vocab + lstm(emsize, nhid) + lstm(nhid, emsize)


def build_awd_lstm(args, params):
    """awd_lstm (2 layers, tied, --emsize = the Mogrifier's) with the --nhid closest in parameters."""
    nhid = min(range(1, 8 * args.hidden), key=lambda h: abs(awd_lstm_params(args.vocab, args.hidden, h) - params))
    model = AWDLSTMModel.build_model(RecurrentLMConfig(emsize=args.hidden, nhid=nhid, nlayers=2), _Task(args.vocab))
    assert n_params(model) == awd_lstm_params(args.vocab, args.hidden, nhid)
    return model


def train_step(model, tokens):
    log_probs, _ = model(tokens[:, :-1])  # (B, T, V)
    loss = -log_probs.gather(2, tokens[:, 1:].unsqueeze(2)).mean()
    loss.backward()
    model.zero_grad(set_to_none=True)


def main(args):
    torch.manual_seed(0)
    mogrifier = {step: build_mogrifier(args, step).train() for step in args.steps}
    params = n_params(next(iter(mogrifier.values())))
    models = {"awd_lstm": build_awd_lstm(args, params).train(), **{f"mogrifier_lstm {s}": m for s, m in mogrifier.items()}}
    tokens = torch.randint(4, args.vocab, (args.batch, args.bptt + 1))
    available = {}
    for name, model in models.items():
        try:
            for _ in range(args.warmup):
                train_step(model, tokens)
            available[name] = model
        except Exception as error:  # e.g. torch.compile without a C++ compiler
            logger.warning("%s skipped: %s", name, str(error).splitlines()[0] if str(error) else type(error).__name__)
    rates = {name: [] for name in available}
    for _ in range(args.rounds_timed):
        for name, model in available.items():
            start = time.perf_counter()
            for _ in range(args.steps_per_round):
                train_step(model, tokens)
            rates[name].append(args.steps_per_round * args.batch * args.bptt / (time.perf_counter() - start))
    base = statistics.median(rates["awd_lstm"])
    print(f"vocab {args.vocab}, batch {args.batch} x bptt {args.bptt}, mogrifier hidden {args.hidden}, "
          f"{args.rounds} rounds of rank {args.rank}; threads {torch.get_num_threads()}; "
          f"median of {args.rounds_timed} interleaved rounds of {args.steps_per_round} steps")
    for name, model in available.items():
        rate = statistics.median(rates[name])
        print(f"{name:26s} {n_params(model) / 1e6:7.2f}M params  {rate:9.0f} tokens/s  x{rate / base:.3f} awd_lstm")


def cli_main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=256, help="the Mogrifier's hidden (= embedding) size")
    p.add_argument("--rounds", type=int, default=5, help="mogrifier rounds")
    p.add_argument("--rank", type=int, default=32, help="rank of the rounds' matrices")
    p.add_argument("--vocab", type=int, default=2000, help="vocabulary size")
    p.add_argument("--batch", type=int, default=16, help="streams per window")
    p.add_argument("--bptt", type=int, default=35, help="window length")
    p.add_argument("--steps", nargs="+", default=["eager", "script", "compile"], help="step implementations")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    p.add_argument("--rounds-timed", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--steps-per-round", type=int, default=3, help="training steps per model per round")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("filelock").setLevel(logging.WARNING)  # torch.compile's cache locks
    main(p.parse_args())


if __name__ == "__main__":
    cli_main()
