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


def one_hot(idx, size, dtype=torch.float32):
    """pointer.py's one_hot: a (1, size) row built in numpy (float32 there)."""
    a = np.zeros((1, size), np.float32)
    a[0][idx] = 1
    return torch.from_numpy(a).to(dtype)


def original_pointer_chunk(rnn_out, targets, probs, pointer_history, next_word_history, window, theta, lambdah, vocab):
    """One pass of pointer.py's evaluate() loop body for a batch-size-1 chunk, in rnn_out's dtype.

    rnn_out (T, H), targets (T,), probs (T, V) = softmax of the model output; the histories are
    (n, H) and (n, V), empty at the start of the stream. Returns (log p(y_t) per token (T,),
    trimmed pointer_history (<=W, H), trimmed next_word_history (<=W, V)). pointer.py adds up
    -log p(y_t) token by token; its perplexity is exp of their mean.
    """
    start_idx = len(next_word_history)
    new_words = torch.cat([one_hot(t.item(), vocab, rnn_out.dtype) for t in targets])
    next_word_history = torch.cat([next_word_history, new_words])
    pointer_history = torch.cat([pointer_history, rnn_out], dim=0)
    log_p = []
    for idx, vocab_loss in enumerate(probs):
        p = vocab_loss
        if start_idx + idx > window:
            valid_next_word = next_word_history[start_idx + idx - window:start_idx + idx]
            valid_pointer_history = pointer_history[start_idx + idx - window:start_idx + idx]
            logits = torch.mv(valid_pointer_history, rnn_out[idx])
            ptr_attn = torch.softmax(theta * logits, dim=0).view(-1, 1)
            ptr_dist = (ptr_attn.expand_as(valid_next_word) * valid_next_word).sum(0).squeeze()
            p = lambdah * ptr_dist + (1 - lambdah) * vocab_loss
        log_p.append(torch.log(p[targets[idx]]))
    return torch.stack(log_p), pointer_history[-window:], next_word_history[-window:]
