"""Bare PyTorch loops of the shapes the plugin trains and scores, on any device: what
fairseq-train and fairseq-eval-lm are measured against (scripts/bench/count_ops.py counts their
aten ops on the CPU, scripts/bench/gpu_check.py times them on a GPU).

`BareLM` is salesforce/awd-lstm-lm model.py `RNNModel` written plainly: an embedding tied to the
output, `nlayers` one-layer `nn.LSTM`s (or QRNN layers: one product for the gates and the plugin's
forget-mult, as salesforce/pytorch-qrnn computes them), and, with `regularize`, main.py's
regularizers (embedding dropout, locked dropouts, DropConnect on the recurrent matrices, AR and
TAR). `train_step` is one update of main.py's `train()`: the stream's state carried and detached,
cross-entropy plus AR / TAR, backward, clipping, SGD at lr * seq_len / bptt. `eval_window` is one
window of main.py's `evaluate()` at batch 1: no gradient, state carried, log p(target) summed.
"""
import time
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...modules.forget_mult import forget_mult


class BareQRNNLayer(nn.Module):
    """Gates [Z; F; O] from [x_t; x_{t-1}] (window 2) or x_t, c_t = f c_{t-1} + (1 - f) z, h = o c."""

    def __init__(self, input_size: int, hidden_size: int, window: int):
        super().__init__()
        self.window = window
        self.linear = nn.Linear(window * input_size, 3 * hidden_size)

    def forward(self, x: Tensor, state, weight: Tensor):
        # x: (T, B, in); state: (c (B, H), prev_x (B, in) or None)
        c0, prev_x = state
        if self.window == 2:
            x = torch.cat([x, torch.cat([prev_x.unsqueeze(0), x[:-1]])], dim=-1)  # (T, B, 2 in)
        z, f, o = F.linear(x, weight, self.linear.bias).chunk(3, dim=-1)
        z = torch.tanh(z)
        c = forget_mult(torch.sigmoid(f), z, c0.to(z.dtype))  # (T, B, H)
        new_prev = x[-1, :, : x.size(-1) // self.window] if self.window == 2 else None
        return torch.sigmoid(o) * c, (c[-1], new_prev)


class BareLM(nn.Module):
    def __init__(self, vocab: int, kind: str = "lstm", emsize: int = 400, nhid: int = 1150, nlayers: int = 3,
                 regularize: bool = True, dropout=0.4, dropouth=0.25, dropouti=0.4, dropoute=0.1, wdrop=0.5):
        super().__init__()
        if kind not in ("lstm", "qrnn"):
            raise ValueError(f"kind must be lstm or qrnn, got {kind}")
        self.kind, self.vocab, self.regularize = kind, vocab, regularize
        self.p = dict(dropout=dropout, dropouth=dropouth, dropouti=dropouti, dropoute=dropoute, wdrop=wdrop)
        self.sizes = [emsize] + [nhid] * (nlayers - 1) + [emsize]  # tied: the last layer is emsize wide
        self.embedding = nn.Embedding(vocab, emsize)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if kind == "lstm":
            self.layers = nn.ModuleList(nn.LSTM(a, b) for a, b in zip(self.sizes, self.sizes[1:]))
        else:
            self.layers = nn.ModuleList(BareQRNNLayer(a, b, 2 if i == 0 else 1)
                                        for i, (a, b) in enumerate(zip(self.sizes, self.sizes[1:])))
        self.bias = nn.Parameter(torch.zeros(vocab))

    def zero_state(self, batch: int, device) -> List[Tuple[Tensor, ...]]:
        if self.kind == "lstm":
            return [(torch.zeros(1, batch, h, device=device), torch.zeros(1, batch, h, device=device))
                    for h in self.sizes[1:]]
        return [(torch.zeros(batch, h, device=device), torch.zeros(batch, a, device=device) if i == 0 else None)
                for i, (a, h) in enumerate(zip(self.sizes, self.sizes[1:]))]

    def _locked(self, x: Tensor, p: float) -> Tensor:
        if not (self.training and self.regularize and p):
            return x
        return x * x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - p).div_(1 - p)  # (1, B, H) over T

    def _drop_weight(self, w: Tensor) -> Tensor:
        return F.dropout(w, self.p["wdrop"]) if self.training and self.regularize and self.p["wdrop"] else w

    def forward(self, tokens: Tensor, state):
        # tokens: (T, B) -> dropped output (T, B, E), raw output (T, B, E), new state
        weight = self.embedding.weight
        x = F.embedding(tokens, weight)  # (T, B, E)
        if self.training and self.regularize and self.p["dropoute"]:
            keep = 1 - self.p["dropoute"]
            x = x * weight.new_empty(self.vocab).bernoulli_(keep).div_(keep)[tokens].unsqueeze(-1)
        x = self._locked(x, self.p["dropouti"])
        new_state = []
        for i, layer in enumerate(self.layers):
            if self.kind == "lstm":
                w = [layer.weight_ih_l0, self._drop_weight(layer.weight_hh_l0), layer.bias_ih_l0, layer.bias_hh_l0]
                x, h, c = torch.lstm(x, state[i], w, True, 1, 0.0, self.training, False, False)
                new_state.append((h, c))
            else:
                x, s = layer(x, state[i], self._drop_weight(layer.linear.weight))
                new_state.append(s)
            raw = x
            if i < len(self.layers) - 1:
                x = self._locked(x, self.p["dropouth"])
        return self._locked(x, self.p["dropout"]), raw, new_state

    def log_probs(self, features: Tensor) -> Tensor:
        return F.log_softmax(F.linear(features, self.embedding.weight, self.bias), dim=-1)


def detach(state):
    return [tuple(None if t is None else t.detach() for t in s) for s in state]


class BareTrainer:
    """main.py `train()` over a (N, B) stream on one device: SGD with L2 decay, lr * seq_len / bptt."""

    def __init__(self, model: BareLM, data: Tensor, bptt: int = 70, lr: float = 30.0, clip: float = 0.25,
                 alpha: float = 2.0, beta: float = 1.0, wdecay: float = 1.2e-6,
                 autocast_dtype: Optional[torch.dtype] = None):
        self.model, self.data, self.bptt = model.train(), data, bptt
        self.lr, self.clip, self.alpha, self.beta = lr, clip, alpha, beta
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wdecay)
        self.autocast_dtype = autocast_dtype
        self.state = model.zero_state(data.size(1), data.device)

    def train_step(self, start: int, seq_len: int) -> Tensor:
        x, y = self.data[start:start + seq_len], self.data[start + 1:start + 1 + seq_len]  # (T, B)
        if start == 0:
            self.state = self.model.zero_state(self.data.size(1), self.data.device)
        self.state = detach(self.state)
        self.optimizer.zero_grad(set_to_none=True)
        device_type = self.data.device.type
        with torch.autocast(device_type, self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None):
            out, raw, self.state = self.model(x, self.state)
            logits = F.linear(out, self.model.embedding.weight, self.model.bias)  # (T, B, V)
            loss = F.cross_entropy(logits.view(-1, self.model.vocab).float(), y.reshape(-1))
            if self.model.regularize:
                loss = loss + self.alpha * out.float().pow(2).mean() + self.beta * (raw[1:] - raw[:-1]).float().pow(2).mean()
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * seq_len / self.bptt
        self.optimizer.step()
        return loss.detach()


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_training(trainer: BareTrainer, windows: Sequence[Tuple[int, int]], warmup: int) -> float:
    """Tokens/s of `trainer` over `windows` after the first `warmup` of them."""
    device = trainer.data.device
    tokens, t0 = 0, None
    for i, (start, seq_len) in enumerate(windows):
        if i == warmup:
            synchronize(device)
            t0, tokens = time.perf_counter(), 0
        trainer.train_step(start, seq_len)
        tokens += seq_len * trainer.data.size(1)
    synchronize(device)
    if t0 is None:
        raise ValueError(f"{len(windows)} windows leave nothing to time after {warmup} of warm-up")
    return tokens / (time.perf_counter() - t0)


@torch.no_grad()
def time_evaluation(model: BareLM, stream: Tensor, bptt: int = 70) -> Tuple[float, float]:
    """main.py `evaluate()` at batch 1 over `stream` (N,) on its device: (tokens/s, mean nll in nats)."""
    model.eval()
    data = stream.view(-1, 1)  # (N, 1)
    state = model.zero_state(1, data.device)
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    synchronize(data.device)
    t0 = time.perf_counter()
    for start in range(0, data.size(0) - 1, bptt):
        seq_len = min(bptt, data.size(0) - 1 - start)
        x, y = data[start:start + seq_len], data[start + 1:start + 1 + seq_len]
        out, _, state = model(x, state)
        total -= model.log_probs(out).gather(2, y.unsqueeze(2)).double().sum()
    synchronize(data.device)
    elapsed = time.perf_counter() - t0
    return (data.size(0) - 1) / elapsed, float(total) / (data.size(0) - 1)
