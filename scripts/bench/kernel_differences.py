"""Which float ops of one training update round differently under two kernel settings (instruction
set, threads, library branch): record every aten op of the first update of a fairseq-train run,
then, in a second process under the other setting, re-run each recorded op on the recorded inputs
and list the ops whose outputs are not bit for bit the same. Takes fairseq-train's arguments:

    ATEN_CPU_CAPABILITY=avx2 OMP_NUM_THREADS=1 python scripts/bench/kernel_differences.py \\
        record /tmp/ops.pt -- data-bin/wikitext-2 --user-dir awd_fairseq --task awd_language_modeling ...
    ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 python scripts/bench/kernel_differences.py \\
        compare /tmp/ops.pt -- <the same arguments>

Each op is compared on its own inputs, so a difference is that op's kernel, not one carried from an
earlier op. Random ops (dropout masks) are left out: the seeded generator gives both runs the same
masks. The record holds every op's inputs and outputs (about 1 GB for the demo's model).
docs/training.md ("Reproducible figures") gives what it found for the demo.
"""
import argparse
import collections
import os
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten

SKIPPED = ("bernoulli", "uniform", "normal", "rand", "empty", "detach", "_to_copy", "copy_", "lift_fresh")


def _copy(x):
    return x.detach().clone() if isinstance(x, torch.Tensor) else None


def _results(func, args, out):
    """What an op computed: its outputs, or for an in-place op (``add_``, ``_foreach_add_``) its first argument."""
    return tree_flatten(args[0] if func._schema.is_mutable and args else out)[0]


class OpRecorder(TorchDispatchMode):
    """Records (op name, tensor inputs, tensor outputs) of every op; random and copying ops by name only."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        kept = name.startswith("aten.") and not any(s in name for s in SKIPPED)
        inputs = [_copy(x) for x in tree_flatten((args, kwargs))[0]] if kept else None
        out = func(*args, **kwargs)
        self.ops.append((name, inputs, [_copy(x) for x in _results(func, args, out)] if kept else None))
        return out


class OpComparer(TorchDispatchMode):
    """Runs like the recorded process; each recorded op is also re-run on the recorded inputs."""

    def __init__(self, recorded):
        super().__init__()
        self.recorded, self.i, self.differing = recorded, 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name, inputs, outputs = self.recorded[self.i] if self.i < len(self.recorded) else (None, None, None)
        if name != str(func):
            raise RuntimeError(f"op {self.i} is {func}, the record has {name}: the runs took different paths")
        if inputs is not None:
            flat, spec = tree_flatten((args, kwargs))
            a, k = tree_unflatten([x.clone() if x is not None else y for x, y in zip(inputs, flat)], spec)
            for again, want in zip(_results(func, a, func(*a, **k)), outputs):
                if want is not None and want.is_floating_point() and not torch.equal(again, want):
                    diff = (again.double() - want.double()).abs()
                    self.differing.append((self.i, name, tuple(want.shape), int((diff > 0).sum()), want.numel(),
                                           diff.max().item() / want.double().abs().max().clamp_min(1e-30).item()))
                    break
        self.i += 1
        return out


def main(args):
    import fairseq.trainer
    train_step = fairseq.trainer.Trainer.train_step
    mode = OpRecorder() if args.mode == "record" else OpComparer(torch.load(args.record))

    def first_update_only(self, samples, raise_oom=False):
        with mode:
            train_step(self, samples, raise_oom)
        if args.mode == "record":
            torch.save(mode.ops, args.record)
            print(f"recorded {len(mode.ops)} ops of the first update into {args.record}")
        else:
            print(f"{mode.i} ops; {len(mode.differing)} round differently from the record")
            print("op#  op  output shape  elements differing / all  max difference / max |output|")
            for row in mode.differing:
                print(*row)
            print(dict(collections.Counter(row[1] for row in mode.differing)))
        sys.stdout.flush()
        os._exit(0)  # the first update is all this looks at

    fairseq.trainer.Trainer.train_step = first_update_only
    from fairseq_cli.train import cli_main as train_main
    sys.argv = ["fairseq-train"] + args.train_args
    train_main()


def cli_main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "compare"), help="record the ops, or compare with a record")
    parser.add_argument("record", help="file of the recorded ops (written by record, read by compare)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then fairseq-train's arguments")
    args = parser.parse_args()
    if args.train_args[:1] == ["--"]:
        args.train_args = args.train_args[1:]
    if not args.train_args:
        parser.error("give fairseq-train's arguments after --")
    main(args)


if __name__ == "__main__":
    cli_main()
