"""Training throughput of `--arch awd_lstm` (the PTB recipe) through fairseq-train, against a bare
PyTorch loop of the same model and batch, and against fairseq's built-in `lstm_lm` at the same
sizes, all in one run on real PTB (salesforce/awd-lstm-lm: batch 20, bptt 70, SGD lr 30, clip
0.25). Prints tokens/s, peak memory (max RSS) and the ratios. Not a test.

    python scripts/bench_throughput.py --ptb ../shared/data/ptb --rounds 3
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEAK = "import atexit, resource; atexit.register(lambda: print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)); "


def run(code_or_module, args, module=True):
    runner = f"import runpy, sys; sys.argv = ['x'] + {list(map(str, args))!r}; runpy.run_module({code_or_module!r}, run_name='__main__')"
    cmd = [sys.executable, "-c", PEAK + (runner if module else code_or_module)]
    if not module:
        cmd += list(map(str, args))
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed:\n{text[-3000:]}")
    peak = int(re.findall(r"PEAK_RSS_KB (\d+)", text)[-1]) / 1024
    return text, peak


def fairseq_wps(text, skip_first=1):
    """Mean words/s of fairseq's train_inner logs, leaving out the first (warm-up) interval."""
    wps = [float(x) for x in re.findall(r"train_inner .*?wps=([0-9.]+)", text)]
    wps = wps[skip_first:] or wps
    return sum(wps) / len(wps)


BARE_LOOP = r'''
import json, sys, time, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from fairseq.data import Dictionary, data_utils
data_bin, updates, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(141)
d = Dictionary.load(data_bin + "/dict.txt")
lines = data_utils.load_indexed_dataset(data_bin + "/train", d)
stream = torch.cat([torch.tensor([d.eos()])] + [lines[i].long() for i in range(len(lines))])
B, bptt, V = 20, 70, len(d)
n = stream.numel() // B
data = stream[: n * B].view(B, n).t().contiguous()  # batchify

class Bare(nn.Module):  # model.py RNNModel, PTB recipe, written plainly
    def __init__(self):
        super().__init__()
        self.enc = nn.Embedding(V, 400); nn.init.uniform_(self.enc.weight, -0.1, 0.1)
        sizes = [400, 1150, 1150, 400]
        self.rnns = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1]) for i in range(3))
        self.bias = nn.Parameter(torch.zeros(V))
    def lockdrop(self, x, p):
        return x * x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - p) / (1 - p)
    def forward(self, x, hidden):
        m = self.enc.weight.new_empty(V, 1).bernoulli_(0.9) / 0.9
        e = self.lockdrop(F.embedding(x, self.enc.weight) * m[x], 0.4)
        new_h = []
        for l, r in enumerate(self.rnns):
            # DropConnect as WeightDrop, with the plugin's CPU mask draw (uniform >= p: F.dropout's
            # Bernoulli costs 4x more on the CPU), so that the ratio measures the framework alone
            w = r.weight_hh_l0 * (torch.rand_like(r.weight_hh_l0) >= 0.5) / 0.5
            # the LSTM kernel called directly with the dropped matrix: the cheapest plain route
            e, h, c = torch.lstm(e, hidden[l], [r.weight_ih_l0, w, r.bias_ih_l0, r.bias_hh_l0], True, 1, 0.0, True, False, False)
            new_h.append((h, c))
            raw = e
            e = self.lockdrop(e, 0.25 if l < 2 else 0.4)
        return e, raw, new_h

model = Bare(); model.train()
opt = torch.optim.SGD(model.parameters(), lr=30, weight_decay=1.2e-6)
hidden = [(torch.zeros(1, B, s), torch.zeros(1, B, s)) for s in (1150, 1150, 400)]
rng = np.random.default_rng(141)
i, done, tokens, t0 = 0, 0, 0, None
while done < updates:
    if i >= n - 2: i = 0
    base = bptt if rng.random() < 0.95 else bptt / 2
    seq = min(max(5, int(rng.normal(base, 5))), n - 1 - i)
    x, y = data[i:i + seq], data[i + 1:i + 1 + seq]
    hidden = [(h.detach(), c.detach()) for h, c in hidden]
    opt.zero_grad()
    out, raw, hidden = model(x, hidden)
    loss = F.cross_entropy((out @ model.enc.weight.t() + model.bias).view(-1, V), y.reshape(-1))
    loss = loss + 2 * out.pow(2).mean() + 1 * (raw[1:] - raw[:-1]).pow(2).mean()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 0.25)
    for g in opt.param_groups: g["lr"] = 30 * seq / bptt
    opt.step()
    i += seq; done += 1
    if done == interval:  # warm-up interval left out, as for fairseq's logs
        t0, tokens = time.time(), 0
    elif done > interval:
        tokens += seq * B
print("BARE_WPS", tokens / (time.time() - t0))
'''


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ptb", default=str(REPO.parent / "shared" / "data" / "ptb"))
    ap.add_argument("--data-bin", default=str(REPO / "data-bin" / "ptb"))
    ap.add_argument("--updates", type=int, default=30, help="updates per run (the first --interval are warm-up)")
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3,
                    help="fairseq-train / bare loop pairs, run back to back in alternating order; the overhead "
                         "is the median of the per-round ratios (shared machines drift by 10%% between runs)")
    ap.add_argument("--lstm-lm-updates", type=int, default=15,
                    help="updates of fairseq's lstm_lm (one run; its per-step Python loop makes it slow)")
    args = ap.parse_args()
    if args.updates <= args.interval or args.lstm_lm_updates <= 5:
        ap.error("--updates must exceed --interval (the first interval is warm-up) and --lstm-lm-updates must exceed 5")
    if not Path(args.data_bin, "train.bin").exists():
        subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_data.py"), "ptb", "--from", args.ptb, "--out", args.data_bin], check=True)
    tmp = tempfile.mkdtemp()

    def common(updates, interval):
        return ["--batch-size", "20", "--max-update", updates, "--log-format", "simple", "--log-interval", interval,
                "--no-progress-bar", "--disable-validation", "--no-save", "--cpu", "--seed", "141", "--save-dir", tmp,
                "--clip-norm", "0.25"]

    def ours():
        text, peak = run("fairseq_cli.train", [args.data_bin, "--user-dir", REPO / "awd_fairseq", "--task", "awd_language_modeling",
                                               "--arch", "awd_lstm", "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd",
                                               "--lr", "30", "--bptt", "70", *common(args.updates, args.interval)])
        return fairseq_wps(text), peak

    def bare():
        text, peak = run(BARE_LOOP, [args.data_bin, args.updates, args.interval], module=False)
        return float(re.findall(r"BARE_WPS ([0-9.]+)", text)[-1]), peak

    runs = {"awd_lstm via fairseq-train": [], "bare PyTorch loop": []}
    ratios = []
    for r in range(args.rounds):
        order = [("awd_lstm via fairseq-train", ours), ("bare PyTorch loop", bare)]
        this = {name: fn() for name, fn in (order if r % 2 == 0 else order[::-1])}
        for name, result in this.items():
            runs[name].append(result)
        ratios.append(this["awd_lstm via fairseq-train"][0] / this["bare PyTorch loop"][0])
        print(f"round {r + 1}: fairseq-train {this['awd_lstm via fairseq-train'][0]:.1f} tok/s, "
              f"bare {this['bare PyTorch loop'][0]:.1f} tok/s, ratio {ratios[-1]:.3f}", flush=True)
    text, peak = run("fairseq_cli.train", [args.data_bin, "--task", "language_modeling", "--arch", "lstm_lm",
                                           "--decoder-embed-dim", "400", "--decoder-hidden-size", "1150", "--decoder-layers", "3",
                                           "--decoder-out-embed-dim", "400", "--share-decoder-input-output-embed",
                                           "--tokens-per-sample", "70", "--sample-break-mode", "none", "--criterion", "cross_entropy",
                                           "--optimizer", "sgd", "--lr", "30", *common(args.lstm_lm_updates, 5)])
    results = {name: (median([w for w, _ in rs]), max(p for _, p in rs)) for name, rs in runs.items()}
    results["fairseq lstm_lm"] = (fairseq_wps(text), peak)
    bare_wps = results["bare PyTorch loop"][0]
    print(f"{'run':30s} {'tokens/s':>10s} {'vs bare':>8s} {'peak RSS MiB':>13s}   (median over rounds)")
    for name, (wps, peak) in results.items():
        print(f"{name:30s} {wps:10.1f} {wps / bare_wps:8.3f} {peak:13.0f}")
    overhead = 1 - median(ratios)
    print(f"plugin + fairseq overhead: {100 * overhead:.1f}% (median of per-round ratios "
          f"{', '.join(f'{x:.3f}' for x in ratios)}; target <= 5%)")
    print(json.dumps({"rounds": ratios, **{k: {"tokens_per_s": v[0], "peak_rss_mib": v[1]} for k, v in results.items()}}))


if __name__ == "__main__":
    main()
