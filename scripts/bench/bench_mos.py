"""Peak memory and time of the mixture-of-softmaxes output layer for one training step (the target
log-probabilities of a batch, forward and backward), at a recipe's shapes (default: the PTB
recipe of zihangdai/mos: 12 streams x 70 steps, nhidlast 620, emsize 280, 15 experts, 10000
words), in one run:

    chunked      MixtureOfSoftmaxes with its default chunk bound (recomputed in the backward pass)
    unchunked    the same module with --mos-chunk-elements 0 (all K x V logits at once)
    reference    zihangdai/mos model.py's probability-space mixture, log(p + 1e-8)

Each variant runs in its own process; the peak is the process's resident-memory high-water mark
(VmHWM) above its resident memory once the inputs exist; the time, the best step over
`--rounds` processes per variant, run in alternating order. Not a test.

    python scripts/bench/bench_mos.py --steps 2 --rounds 2
"""
import argparse
import json
import subprocess
import sys
import time

VARIANTS = ("chunked", "unchunked", "reference")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def reference_loss(mos, features, weight, bias, target):
    """zihangdai/mos RNNModel.forward's output layer and nll_loss, on the same parameters."""
    import torch
    import torch.nn.functional as F

    latent = mos.latent(features).tanh()  # no latent dropout: the module is built without it too
    logit = F.linear(latent.view(-1, mos.embed_dim), weight, bias)
    prior = F.softmax(mos.prior(features).view(-1, mos.n_experts), -1)
    prob = F.softmax(logit, -1).view(-1, mos.n_experts, weight.size(0))
    prob = (prob * prior.unsqueeze(2)).sum(1)
    return F.nll_loss(torch.log(prob + 1e-8), target.view(-1), reduction="sum")


def worker(args) -> dict:
    import torch

    from awd_fairseq.modules.mixture_of_softmaxes import DEFAULT_MAX_CHUNK_ELEMENTS, MixtureOfSoftmaxes

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    chunk = DEFAULT_MAX_CHUNK_ELEMENTS if args.worker == "chunked" else 0
    mos = MixtureOfSoftmaxes(args.nhidlast, args.emsize, args.n_experts, max_chunk_elements=chunk)
    weight = torch.empty(args.vocab, args.emsize).uniform_(-0.1, 0.1).requires_grad_()
    bias = torch.zeros(args.vocab, requires_grad=True)
    features = torch.randn(args.batch_size, args.bptt, args.nhidlast, requires_grad=True)  # (B, T, H)
    target = torch.randint(0, args.vocab, (args.batch_size, args.bptt))
    baseline = _status_kb("VmRSS")
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        if args.worker == "reference":
            loss = reference_loss(mos, features, weight, bias, target)
        else:
            loss = -mos.target_log_probs(features, weight, bias, target).sum()
        loss.backward()
        times.append(time.perf_counter() - start)
    return {
        "variant": args.worker,
        "chunk_tokens": min(mos._chunk_rows(args.vocab) or target.numel(), target.numel()),
        "peak_mib": (_status_kb("VmHWM") - baseline) / 1024,
        "seconds_per_step": min(times),
        "loss_per_token": loss.item() / target.numel(),
    }


def main(args):
    shapes = (f"B={args.batch_size} T={args.bptt} nhidlast={args.nhidlast} emsize={args.emsize} "
              f"K={args.n_experts} V={args.vocab}, {args.threads} thread(s), best of {args.rounds} x {args.steps} steps")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("worker", "rounds")]
    runs = {variant: [] for variant in VARIANTS}
    for round_ in range(args.rounds):  # alternating order, so that a change in load hits every variant
        for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
            out = subprocess.run([sys.executable, __file__, "--worker", variant, *flags], capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{variant} failed:\n{out.stderr[-3000:]}")
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = [
        dict(rs[0], peak_mib=max(r["peak_mib"] for r in rs), seconds_per_step=min(r["seconds_per_step"] for r in rs))
        for rs in runs.values()
    ]
    base = results[1]
    print(f"output layer, one training step (forward + backward): {shapes}")
    print(f"{'variant':<10} {'tokens/chunk':>12} {'peak MiB':>9} {'x unchunked':>11} {'s/step':>7} {'x unchunked':>11} {'loss/token':>10}")
    for r in results:
        print(f"{r['variant']:<10} {r['chunk_tokens']:>12} {r['peak_mib']:>9.0f} {r['peak_mib'] / base['peak_mib']:>11.2f} "
              f"{r['seconds_per_step']:>7.3f} {r['seconds_per_step'] / base['seconds_per_step']:>11.2f} "
              f"{r['loss_per_token']:>10.4f}")


def cli_main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--bptt", type=int, default=70)
    parser.add_argument("--nhidlast", type=int, default=620)
    parser.add_argument("--emsize", type=int, default=280)
    parser.add_argument("--n-experts", type=int, default=15)
    parser.add_argument("--vocab", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="processes per variant (time: the best; peak: the largest)")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
    else:
        main(args)


if __name__ == "__main__":
    cli_main()
