"""Fit the Mogrifier LSTM's softmax temperature on held-out text, as deepmind/lamb does before it
scores validation and test (Melis, Kočiský and Blunsom, arXiv 1909.01792; lamb evaluation.py
`evaluate_all` with a negative `eval_softmax_temperature`).

lamb multiplies the logits by s = 1.06, 1.04, 1.02, ... (never below -eval_softmax_temperature,
0.8 in its recipes), scores the first `eval_softmax_temperature_estimation_num_tokens` (50,000)
tokens of valid at each, and stops two steps after the best. The models here divide the logits by
T (mogrifier_lstm's `softmax_temperature`), so the fit is T = 1 / s. The features of those tokens
are computed once (the recurrent state carried through windows); each candidate then costs one
pass of the output layer. Losses are mean negative log2-likelihoods (bits per token).

    fit = fit_softmax_temperature(model, read_stream(valid_path, dictionary))
    # fairseq-eval-lm ... --model-overrides "{'softmax_temperature': fit.temperature}"
"""
import logging
import math
from dataclasses import dataclass
from typing import Callable, List, Tuple

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

LAMB_START, LAMB_STEP, LAMB_LOWEST_MULTIPLIER = 1.06, 0.02, 0.8
LAMB_TOKENS, LAMB_STREAMS, LAMB_WINDOW = 50000, 64, 70  # estimation tokens, lamb's batch size and max_time_steps


@dataclass
class TemperatureFit:
    temperature: float  # T: the logits are divided by it
    loss: float  # bits per token at T
    loss_at_one: float  # bits per token at T = 1
    tried: List[Tuple[float, float]]  # (T, loss) in the order tried


def lamb_search(loss_at: Callable[[float], float], lowest: float = LAMB_LOWEST_MULTIPLIER,
                start: float = LAMB_START, step: float = LAMB_STEP) -> Tuple[float, List[Tuple[float, float]]]:
    """The multiplier s of lamb's search (the best loss_at(s) of s = start, start - step, ...,
    s >= lowest, stopping once two candidates after the best brought nothing), and every (s, loss)."""
    tried, best_i, best = [], 0, None
    for i in range(50):
        s = start - i * step
        if s < lowest - 1e-4:
            break
        loss = loss_at(s)
        tried.append((s, loss))
        if best is None or loss < best[1]:
            best_i, best = i, (s, loss)
        if best_i + 1 < i:
            break
    return best[0], tried


@torch.no_grad()
def stream_features(model, tokens: Tensor, streams: int = LAMB_STREAMS, window: int = LAMB_WINDOW,
                    max_tokens: int = LAMB_TOKENS) -> Tuple[Tensor, Tensor]:
    """The first `max_tokens` predictions of `tokens` (N,) cut into `streams` contiguous streams
    read in windows with the state carried (the task's layout): `(features (M, H), targets (M,))`."""
    model.eval()
    length = min(tokens.numel() - 1, max_tokens) // streams  # predictions per stream
    if length < 1:
        raise ValueError(f"{tokens.numel()} tokens do not fill {streams} streams: lower the number of streams")
    data = tokens[: streams * length + 1]
    inputs = torch.stack([data[i * length : (i + 1) * length] for i in range(streams)])  # (B, L)
    targets = torch.stack([data[i * length + 1 : (i + 1) * length + 1] for i in range(streams)])
    features, state = [], None
    for start in range(0, length, window):
        out, _, state = model.decoder.extract_features(inputs[:, start : start + window], state)
        features.append(out)  # (B, t, H)
    return torch.cat(features, 1).reshape(-1, features[0].size(-1)), targets.reshape(-1)


@torch.no_grad()
def loss_at_temperature(decoder, features: Tensor, targets: Tensor, temperature: float, chunk: int = 4096) -> float:
    """Mean -log2 p(target) of features (M, H) with the decoder's logits divided by `temperature`."""
    if not hasattr(decoder, "softmax_temperature"):
        raise ValueError(f"{type(decoder).__name__} has no softmax temperature: fit it for mogrifier_lstm models")
    saved, decoder.softmax_temperature = decoder.softmax_temperature, float(temperature)
    try:
        total = 0.0
        for start in range(0, targets.numel(), chunk):
            f, t = features[start : start + chunk], targets[start : start + chunk]
            total -= decoder.target_log_probs(f.unsqueeze(0), t.unsqueeze(0)).double().sum().item()
    finally:
        decoder.softmax_temperature = saved
    return total / targets.numel() / math.log(2)


def fit_softmax_temperature(model, tokens: Tensor, streams: int = LAMB_STREAMS, window: int = LAMB_WINDOW,
                            max_tokens: int = LAMB_TOKENS, lowest: float = LAMB_LOWEST_MULTIPLIER) -> TemperatureFit:
    """lamb's fit on the first `max_tokens` of `tokens` (a held-out split's stream)."""
    features, targets = stream_features(model, tokens, streams, window, max_tokens)
    decoder = model.decoder
    multiplier, tried = lamb_search(lambda s: loss_at_temperature(decoder, features, targets, 1.0 / s), lowest)
    losses = {s: loss for s, loss in tried}
    fit = TemperatureFit(1.0 / multiplier, losses[multiplier], loss_at_temperature(decoder, features, targets, 1.0),
                         [(1.0 / s, loss) for s, loss in tried])
    logger.info("softmax temperature %.4f (logits x %.2f): %.4f bits per token against %.4f at 1, on %d tokens",
                fit.temperature, multiplier, fit.loss, fit.loss_at_one, targets.numel())
    return fit
