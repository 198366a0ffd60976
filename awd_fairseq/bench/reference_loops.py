"""The original implementations the benchmarks time ours against, restated in their own
conventions (not used by the plugin):

* salesforce/pytorch-qrnn ``torchqrnn/forget_mult.py`` ``CPUForgetMult``: the forget-mult as an
  autograd loop, with pytorch-qrnn's ``f`` weighting the new input;
* salesforce/awd-lstm-lm ``pointer.py`` ``evaluate()``: the cache pointer's per-token loop over a
  (window, V) one-hot history of next words.
"""
import numpy as np
import torch


def pytorch_qrnn_cpu_forget_mult(f, x, hidden_init=None):
    """pytorch-qrnn's CPUForgetMult.forward: h_t = f_t * x_t + (1 - f_t) * h_{t-1}; (T, B, H)."""
    result = []
    forgets = f.split(1, dim=0)
    prev_h = hidden_init
    for i, h in enumerate((f * x).split(1, dim=0)):
        if prev_h is not None:
            h = h + (1 - forgets[i]) * prev_h
        h = h.view(h.size()[1:])
        result.append(h)
        prev_h = h
    return torch.stack(result)


def one_hot(idx, size):
    """pointer.py's one_hot: a (1, size) float32 row built in numpy."""
    a = np.zeros((1, size), np.float32)
    a[0][idx] = 1
    return torch.from_numpy(a)


def original_pointer_chunk(rnn_out, targets, probs, pointer_history, next_word_history, window, theta, lambdah, vocab):
    """One pass of pointer.py's evaluate() loop body for a batch-size-1 chunk.

    rnn_out (T, H), targets (T,), probs (T, V) = softmax of the model output.
    Returns (summed -log p, trimmed pointer_history (<=W, H), trimmed next_word_history (<=W, V)).
    """
    start_idx = len(next_word_history)
    next_word_history = torch.cat([next_word_history, torch.cat([one_hot(t.item(), vocab) for t in targets])])
    pointer_history = torch.cat([pointer_history, rnn_out], dim=0)
    loss = 0.0
    for idx, vocab_loss in enumerate(probs):
        p = vocab_loss
        if start_idx + idx > window:
            valid_next_word = next_word_history[start_idx + idx - window:start_idx + idx]
            valid_pointer_history = pointer_history[start_idx + idx - window:start_idx + idx]
            logits = torch.mv(valid_pointer_history, rnn_out[idx])
            ptr_attn = torch.softmax(theta * logits, dim=0).view(-1, 1)
            ptr_dist = (ptr_attn.expand_as(valid_next_word) * valid_next_word).sum(0).squeeze()
            p = lambdah * ptr_dist + (1 - lambdah) * vocab_loss
        target_loss = p[targets[idx]]
        loss += -torch.log(target_loss).item()
    return loss, pointer_history[-window:], next_word_history[-window:]
