"""The PTB AWD-LSTM recipe as a bare PyTorch training loop (salesforce/awd-lstm-lm model.py
`RNNModel` and main.py `train()`, written plainly, no fairseq in the loop): the reference that
scripts/bench/bench_throughput.py measures fairseq-train's overhead against. Run as a process of its own:

    python -m awd_fairseq.tools.bench.bare_awd_lstm DATA_BIN UPDATES INTERVAL

prints `BARE_WPS <tokens/s>` over the updates after the first INTERVAL (warm-up, as the first
interval of fairseq's logs is left out).
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

B, BPTT = 20, 70


class BareAWDLSTM(nn.Module):
    """model.py RNNModel with the PTB recipe's sizes and dropouts, written plainly."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.enc = nn.Embedding(vocab, 400)
        nn.init.uniform_(self.enc.weight, -0.1, 0.1)
        sizes = [400, 1150, 1150, 400]
        self.rnns = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1]) for i in range(3))
        self.bias = nn.Parameter(torch.zeros(vocab))

    @staticmethod
    def lockdrop(x, p):
        return x * x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - p) / (1 - p)

    def forward(self, x, hidden):
        m = self.enc.weight.new_empty(self.vocab, 1).bernoulli_(0.9) / 0.9
        e = self.lockdrop(F.embedding(x, self.enc.weight) * m[x], 0.4)
        new_h = []
        for layer, rnn in enumerate(self.rnns):
            # DropConnect as WeightDrop, with the plugin's CPU mask draw (uniform >= p: F.dropout's
            # Bernoulli costs 4x more on the CPU), so that the ratio measures the framework alone
            w = rnn.weight_hh_l0 * (torch.rand_like(rnn.weight_hh_l0) >= 0.5) / 0.5
            # the LSTM kernel called directly with the dropped matrix: the cheapest plain route
            weights = [rnn.weight_ih_l0, w, rnn.bias_ih_l0, rnn.bias_hh_l0]
            e, h, c = torch.lstm(e, hidden[layer], weights, True, 1, 0.0, True, False, False)
            new_h.append((h, c))
            raw = e
            e = self.lockdrop(e, 0.25 if layer < 2 else 0.4)
        return e, raw, new_h


def train_wps(data_bin: str, updates: int, interval: int) -> float:
    """Tokens/s of main.py's training loop over the updates after the first `interval`."""
    from fairseq.data import Dictionary, data_utils

    torch.manual_seed(141)
    d = Dictionary.load(data_bin + "/dict.txt")
    lines = data_utils.load_indexed_dataset(data_bin + "/train", d)
    stream = torch.cat([torch.tensor([d.eos()])] + [lines[i].long() for i in range(len(lines))])
    V = len(d)
    n = stream.numel() // B
    data = stream[: n * B].view(B, n).t().contiguous()  # batchify: (n, B)

    model = BareAWDLSTM(V).train()
    opt = torch.optim.SGD(model.parameters(), lr=30, weight_decay=1.2e-6)
    hidden = [(torch.zeros(1, B, s), torch.zeros(1, B, s)) for s in (1150, 1150, 400)]
    rng = np.random.default_rng(141)
    i, done, tokens, t0 = 0, 0, 0, None
    while done < updates:
        if i >= n - 2:
            i = 0
        base = BPTT if rng.random() < 0.95 else BPTT / 2
        seq = min(max(5, int(rng.normal(base, 5))), n - 1 - i)
        x, y = data[i : i + seq], data[i + 1 : i + 1 + seq]
        hidden = [(h.detach(), c.detach()) for h, c in hidden]
        opt.zero_grad()
        out, raw, hidden = model(x, hidden)
        loss = F.cross_entropy((out @ model.enc.weight.t() + model.bias).view(-1, V), y.reshape(-1))
        loss = loss + 2 * out.pow(2).mean() + 1 * (raw[1:] - raw[:-1]).pow(2).mean()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        for g in opt.param_groups:
            g["lr"] = 30 * seq / BPTT
        opt.step()
        i += seq
        done += 1
        if done == interval:  # warm-up interval left out, as for fairseq's logs
            t0, tokens = time.time(), 0
        elif done > interval:
            tokens += seq * B
    return tokens / (time.time() - t0)


def main(args: argparse.Namespace) -> None:
    print("BARE_WPS", train_wps(args.data_bin, args.updates, args.interval), flush=True)


def cli_main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_bin", help="binarized PTB")
    parser.add_argument("updates", type=int, help="updates to run, warm-up included")
    parser.add_argument("interval", type=int, help="warm-up updates left out of the figure")
    main(parser.parse_args())


if __name__ == "__main__":
    cli_main()
