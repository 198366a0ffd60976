"""Print (or run) the commands of one of the original README's experiments, stage by stage:
train, fine-tune, fairseq-eval-lm on test, cache pointer. Training stages are written for
fairseq-hydra-train (the configs in awd_fairseq/config) or, with --argparse, as the equivalent
fairseq-train flags.

    python scripts/recipe.py ptb_awd_lstm data-bin/ptb --save-dir checkpoints/ptb
    python scripts/recipe.py ptb_awd_lstm data-bin/ptb --save-dir checkpoints/ptb --argparse --run
"""
import argparse
import logging
import shlex
import subprocess

from awd_fairseq.tools.recipes import RECIPES, stage_commands
from awd_fairseq.tools.cli import setup_logging

logger = logging.getLogger("scripts.recipe")


def main(args) -> None:
    recipe = RECIPES[args.recipe]
    commands = stage_commands(recipe, args.data, args.save_dir, overrides=args.override, argparse=args.argparse)
    stages = [s for s in commands if not args.stages or s in args.stages.split(",")]
    for stage in stages:
        print(f"# {stage}\n{shlex.join(commands[stage])}")
        if args.run:
            logger.info("running %s", stage)
            subprocess.run(commands[stage], check=True)


def cli_main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", choices=sorted(RECIPES), help="the experiment (awd_fairseq/config/<recipe>.yaml)")
    p.add_argument("data", help="its fairseq-preprocess output, e.g. data-bin/ptb (scripts/prepare_data.py)")
    p.add_argument("--save-dir", required=True, help="checkpoints of training; fine-tuning writes <save-dir>_finetune")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="hydra override for the training stages, e.g. --override common.cpu=true (repeatable)")
    p.add_argument("--argparse", action="store_true", help="write the training stages as fairseq-train flags")
    p.add_argument("--stages", default="", help="comma-separated subset of train,finetune,eval,pointer")
    p.add_argument("--run", action="store_true", help="run the stages in order instead of only printing them")
    setup_logging()
    main(p.parse_args())


if __name__ == "__main__":
    cli_main()
