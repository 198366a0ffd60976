"""fairseq-eval-lm's command line for the tools that take its arguments (pointer and
dynamic-evaluation tuning, their benchmarks): its parser with an evaluation task as the default,
and the checkpoint loading fairseq_cli/eval_lm.py does, returning the task's models (the
StreamScorer wrappers under awd_cache_pointer / awd_dynamic_eval)."""
import torch


def eval_lm_parser(description: str, default_task: str = "awd_cache_pointer"):
    """fairseq-eval-lm's parser; add a script's own flags to it."""
    from fairseq import options

    parser = options.get_eval_lm_parser(default_task=default_task)
    parser.description = description
    return parser


def parse_eval_lm_args(parser, argv=None):
    """fairseq's `parse_args_and_arch` (the chosen task's and model's flags added)."""
    from fairseq import options

    return options.parse_args_and_arch(parser, argv)


def load_eval_lm_models(args):
    """Load the checkpoint(s) of parsed fairseq-eval-lm arguments as fairseq-eval-lm does.
    Returns (task, models), in eval mode; on CUDA unless --cpu or none is available."""
    from fairseq import checkpoint_utils, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [cfg.common_eval.path], arg_overrides=eval(cfg.common_eval.model_overrides), task=task
    )
    if torch.cuda.is_available() and not cfg.common.cpu:
        models = [m.cuda() for m in models]
    return task, [m.eval() for m in models]
