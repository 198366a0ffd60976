"""fairseq-eval-lm against a bare PyTorch loop over the same weights, in the same run.

    python scripts/bench/bench_eval_lm.py --wt2 data-bin/wikitext-2 --ptb data-bin/ptb --rounds 3

For each model (the demo AWD-LSTM on WikiText-2 valid: 64/256, 2 layers, split softmax 2000,10000;
a PTB-sized awd_lstm and qrnn, 200/400, 3 layers, on PTB valid) the script writes a checkpoint
(one training update: speed and the equality of the two perplexities do not depend on training),
then alternates, round by round:

* fairseq-eval-lm --task awd_language_modeling --test-batch-size 1, its own "tokens/s" figure;
* a bare loop in a fresh process: the checkpoint's weights in plain `nn.LSTM`s (the QRNN's own
  layers), the tied embedding, a full `log_softmax` over the vocabulary (for the split-softmax
  demo model, its two-level distribution written out from one product over the whole
  vocabulary), state carried, windows of --bptt tokens; timed over the same loop.

It prints tokens/s of both, their ratio (median over rounds), both perplexities, and the user and
system CPU seconds of each process (rounds in alternating order: this machine is noisy).
"""
import argparse
import json
import logging
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from awd_fairseq.tools.fairseq_logs import eval_lm_summary
from awd_fairseq.tools.cli import USER_DIR, setup_logging

logger = logging.getLogger("bench_eval_lm")

MODELS = {  # name -> (data flag, arch, model flags)
    "demo_wt2": ("wt2", "awd_lstm_wt2", ["--emsize", "64", "--nhid", "256", "--nlayers", "2",
                                         "--split-softmax-cutoffs", "2000,10000"]),
    "ptb_awd_lstm": ("ptb", "awd_lstm", ["--emsize", "200", "--nhid", "400", "--nlayers", "3"]),
    "ptb_qrnn": ("ptb", "qrnn", ["--emsize", "200", "--nhid", "400", "--nlayers", "3"]),
}


def _run(cmd, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout, proc.stderr, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def make_checkpoint(data, arch, flags, save_dir, threads):
    path = os.path.join(save_dir, "checkpoint_last.pt")
    if not os.path.exists(path):
        _run([sys.executable, "-m", "fairseq_cli.train", data, "--user-dir", USER_DIR, "--task", "awd_language_modeling",
              "--arch", arch, *flags, "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd", "--lr", "30",
              "--clip-norm", "0.25", "--batch-size", "20", "--bptt", "70", "--max-update", "1", "--disable-validation",
              "--save-dir", save_dir, "--cpu", "--no-progress-bar"], threads)
    return path


def eval_lm(data, ckpt, split, bptt, threads):
    out, err, user, sys_ = _run([sys.executable, "-m", "fairseq_cli.eval_lm", data, "--user-dir", USER_DIR, "--task",
                            "awd_language_modeling", "--path", ckpt, "--gen-subset", split, "--bptt", str(bptt),
                            "--test-batch-size", "1", "--cpu", "--no-progress-bar"], threads)
    summary = eval_lm_summary(out + err)
    rate, ppl = summary.tokens / summary.seconds, summary.perplexity
    return {"tokens_per_s": rate, "ppl": ppl, "user_s": user, "sys_s": sys_}


def bare(data, ckpt, split, bptt, threads):
    out, _err, user, sys_ = _run([sys.executable, os.path.abspath(__file__), "--bare-loop", ckpt, "--data", data,
                            "--split", split, "--bptt", str(bptt)], threads)
    result = json.loads(out.strip().splitlines()[-1])
    result.update(user_s=user, sys_s=sys_)
    return result


# -- the bare loop (runs in its own process) -------------------------------------------------


def _plain_layers(decoder):
    """The decoder's layers as plain modules: nn.LSTM with the raw weights, or the QRNN layers."""
    plain = []
    for layer in decoder.layers:
        if hasattr(layer, "lstm"):
            src = layer.lstm
            lstm = torch.nn.LSTM(src.input_size, src.hidden_size)
            with torch.no_grad():
                for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                    getattr(lstm, name).copy_(getattr(src, name))  # eval: weight drop is the identity

            def run(x, state, lstm=lstm):
                out, (h, c) = lstm(x, state)
                return out, (h, c)

            plain.append(run)
        else:
            plain.append(layer)
    return plain


def full_log_probs(x, weight, bias, split=None):
    """log p(w) for every word: a log_softmax over the tied embedding's logits; with a split
    softmax, its two-level distribution written out (splitcross.py): the head softmax over the
    head words and one tombstone per tail cluster, each tail word's log-probability its
    tombstone's plus its log_softmax within the cluster."""
    lead, x = x.shape[:-1], x.reshape(-1, x.size(-1))  # (N, H): one matrix product, not N vector products
    logits = torch.addmm(bias, x, weight.t())  # (N, V): the whole vocabulary
    if not split:
        return torch.log_softmax(logits, dim=-1).view(*lead, -1)
    bounds = [0, *split.cutoffs, logits.size(-1)]
    tombstones = torch.addmm(split.tail_bias, x, split.tail_vectors.t())  # (N, n)
    head = torch.log_softmax(torch.cat([logits[:, : bounds[1]], tombstones], dim=-1), dim=-1)
    logits[:, : bounds[1]] = head[:, : bounds[1]]
    for k in range(1, len(bounds) - 1):  # in place: + log p(tombstone k) - logsumexp over cluster k
        cluster = logits[:, bounds[k]:bounds[k + 1]]
        cluster += (head[:, bounds[1] + k - 1] - torch.logsumexp(cluster, dim=-1)).unsqueeze(1)
    return logits.view(*lead, -1)


@torch.no_grad()
def bare_loop(ckpt, data, split, bptt):
    from fairseq import checkpoint_utils

    import awd_fairseq  # noqa: F401  (registers the model)
    from awd_fairseq.tasks.token_stream import read_stream

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([ckpt], arg_overrides={"data": data})
    model = models[0].eval()
    decoder = model.decoder
    stream = read_stream(os.path.join(data, split), task.dictionary)
    weight = decoder.embed_tokens.weight
    out_weight = weight if decoder.output_weight is None else decoder.output_weight
    bias = decoder.output_bias
    layers = _plain_layers(decoder)
    split = getattr(decoder.softmax, "cutoffs", None) and decoder.softmax
    states = [None] * len(layers)
    total, count = 0.0, 0
    start = time.perf_counter()
    for i in range(0, stream.numel() - 1, bptt):
        n = min(bptt, stream.numel() - 1 - i)  # the last window is shorter
        src, tgt = stream[i : i + n].view(-1, 1), stream[i + 1 : i + 1 + n].view(-1, 1)  # (T, 1)
        x = torch.nn.functional.embedding(src, weight)
        for k, layer in enumerate(layers):
            x, states[k] = layer(x, states[k])
        lprobs = full_log_probs(x, out_weight, bias, split)  # (T, 1, V)
        total += float(lprobs.gather(2, tgt.unsqueeze(2)).double().sum())
        count += tgt.numel()
    seconds = time.perf_counter() - start
    return {"tokens_per_s": count / seconds, "ppl": math.exp(-total / count), "tokens": count}


def main(args):
    torch.set_num_threads(args.threads)
    if args.bare_loop:
        print(json.dumps(bare_loop(args.bare_loop, args.data, args.split, args.bptt)))
        return
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_eval_lm_")
    rows = []
    for name in args.models:
        which, arch, flags = MODELS[name]
        data = getattr(args, which)
        ckpt = make_checkpoint(data, arch, flags, os.path.join(work, name), args.threads)
        runs = {"eval_lm": [], "bare": []}
        for r in range(args.rounds):
            order = ("eval_lm", "bare") if r % 2 == 0 else ("bare", "eval_lm")
            for kind in order:
                fn = eval_lm if kind == "eval_lm" else bare
                runs[kind].append(fn(data, ckpt, args.split, args.bptt, args.threads))
                logger.info("%s round %d %s: %s", name, r, kind, runs[kind][-1])
        ratios = [e["tokens_per_s"] / b["tokens_per_s"] for e, b in zip(runs["eval_lm"], runs["bare"])]
        med = {k: {m: statistics.median(x[m] for x in v) for m in ("tokens_per_s", "user_s", "sys_s")}
               for k, v in runs.items()}
        rows.append((name, med, statistics.median(ratios), runs["eval_lm"][0]["ppl"], runs["bare"][0]["ppl"]))
    print(f"| model ({args.split}, batch 1, bptt {args.bptt}, {args.threads} threads) | eval-lm tokens/s | bare tokens/s "
          "| eval-lm / bare | ppl eval-lm | ppl bare | CPU user/sys s eval-lm | bare |")
    print("|---|---|---|---|---|---|---|---|")
    for name, med, ratio, ppl_e, ppl_b in rows:
        e, b = med["eval_lm"], med["bare"]
        print(f"| {name} | {e['tokens_per_s']:.0f} | {b['tokens_per_s']:.0f} | {ratio:.2f} | {ppl_e:.2f} | {ppl_b:.2f} "
              f"| {e['user_s']:.1f} / {e['sys_s']:.1f} | {b['user_s']:.1f} / {b['sys_s']:.1f} |")


def cli_main():
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wt2", default="data-bin/wikitext-2", help="WikiText-2 data-bin (scripts/prepare_data.py)")
    parser.add_argument("--ptb", default="data-bin/ptb", help="PTB data-bin (scripts/prepare_data.py ptb --from ...)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--split", default="valid")
    parser.add_argument("--bptt", type=int, default=70)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", help="where the checkpoints go (reused when present)")
    parser.add_argument("--bare-loop", metavar="CKPT", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    main(parser.parse_args())


if __name__ == "__main__":
    cli_main()
