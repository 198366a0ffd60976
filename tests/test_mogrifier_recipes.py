"""The Mogrifier LSTM recipes (config/recipe/ptb_mogrifier.yaml, wt2_mogrifier.yaml) against
deepmind/lamb's experiment configs, whose lines are quoted below as they stand in
lamb/experiment/mogrifier/config/<experiment>/<trial>/config (only the lines that bear on a
recipe; every other line there is a default of lamb or a value that does not apply). lamb's loss
is summed over a window's `max_time_steps` steps where fairseq's is a mean over tokens, so the
gradient-scale options (L2, clipping, epsilon) compare after division by max_time_steps."""
import ast
import math

import pytest
import torch
from fairseq.data import Dictionary

from awd_fairseq.tools import recipes

PTB_24M = """
  ('num_params', 24000000),
  ('share_input_and_output_embeddings', True),
  ('input_embedding_ratio', 1.0),
  ('mos_num_components', 0),
  ('token_dropout', 0.0),
  ('embedding_dropout', 0.0),
  ('input_dropout', 0.7290787773167251),
  ('output_dropout', 0.7156690388448465),
  ('downprojected_output_dropout', -1.0),
  ('shared_mask_dropout', False),
  ('num_layers', 2),
  ('lstm_skip_connection', True),
  ('feature_mask_rounds', 5),
  ('feature_mask_rank', 84),
  ('hidden_size', [-1]),
  ('cap_input_gate', True),
  ('inter_layer_dropout', 0.2909822365241189),
  ('state_dropout', 0.38729439899832296),
  ('update_dropout', 0.0),
  ('l2_penalty', 0.00025235335778471014),
  ('activation_norm_penalty', 0.0),
  ('drop_state_probability', 0.01),
  ('forget_bias', 1.0),
  ('steps_per_turn', 200),
  ('turns', 1000),
  ('optimizer_type', 'rmsprop'),
  ('rmsprop_beta2', 0.999),
  ('rmsprop_epsilon', 1e-08),
  ('batch_size', 64),
  ('max_grad_norm', 10.0),
  ('max_time_steps', 70),
  ('trigger_averaging_turns', 50),
  ('trigger_averaging_at_the_latest', 800),
  ('learning_rate', 0.002299987130225388),
  ('learning_rate_decay', 1.0),
  ('min_non_episodic_eval_examples_per_stripe', 100),
  ('eval_softmax_temperature', -0.8),
  ('eval_softmax_temperature_estimation_num_tokens', 50000),
  ('seed', 1),
"""
WT2_35M = """
  ('num_params', 35000000),
  ('share_input_and_output_embeddings', True),
  ('input_embedding_ratio', 0.1993194960596213),
  ('mos_num_components', 2),
  ('token_dropout', 0.0),
  ('embedding_dropout', 0.0),
  ('input_dropout', 0.5469087645499495),
  ('output_dropout', 0.34766651193735193),
  ('downprojected_output_dropout', -1.0),
  ('shared_mask_dropout', False),
  ('num_layers', 2),
  ('lstm_skip_connection', True),
  ('feature_mask_rounds', 6),
  ('feature_mask_rank', 48),
  ('hidden_size', [-1]),
  ('cap_input_gate', True),
  ('inter_layer_dropout', 0.1988228263748591),
  ('state_dropout', 0.22137985867236876),
  ('update_dropout', 0.0),
  ('l2_penalty', 0.00018994987193751323),
  ('activation_norm_penalty', 0.0),
  ('drop_state_probability', 0.01),
  ('forget_bias', 1.0),
  ('steps_per_turn', 200),
  ('turns', 1000),
  ('optimizer_type', 'rmsprop'),
  ('rmsprop_beta2', 0.999),
  ('rmsprop_epsilon', 1e-08),
  ('batch_size', 64),
  ('max_grad_norm', 10.0),
  ('max_time_steps', 70),
  ('trigger_averaging_turns', 50),
  ('trigger_averaging_at_the_latest', 800),
  ('learning_rate', 0.003287792100749033),
  ('learning_rate_decay', 1.0),
  ('min_non_episodic_eval_examples_per_stripe', 100),
  ('eval_softmax_temperature', -0.8),
  ('eval_softmax_temperature_estimation_num_tokens', 50000),
  ('seed', 1),
"""
LAMB = {
    "ptb_mogrifier": ("786252db3825+_tune_ptb_24m_lstm_fm_d2_arms/trial_483", PTB_24M, "ptb"),
    "wt2_mogrifier": ("c51c838b33a5+_tune_wikitext-2_35m_lstm_mos2_fm_d2_arms/trial_747", WT2_35M, "wikitext-2"),
}
# lamb's vocabulary (vocab.py): the corpus' word types (PTB 9,999 with its own <unk>, WikiText-2
# 33,277) plus lamb's <UNK> and end-of-sentence symbols; and the validation splits' lengths in
# tokens with one end of sentence per line
LAMB_VOCAB = {"ptb": 10001, "wikitext-2": 33279}
VALID_TOKENS = {"ptb": 73760, "wikitext-2": 217646}


def lamb_config(text):
    return dict(ast.literal_eval(line.strip().rstrip(",")) for line in text.strip().splitlines())


def resolved(lamb):
    """lamb_flags.handle_config_defaults' rules for the values quoted."""
    values = dict(lamb)
    if values["downprojected_output_dropout"] < 0:
        values["downprojected_output_dropout"] = values["output_dropout"]
    return values


@pytest.mark.parametrize("name", sorted(LAMB))
def test_recipe_is_lambs_config(name):
    _, text, data = LAMB[name]
    lamb = resolved(lamb_config(text))
    cfg = recipes.compose(name, ["task.data=x"])
    m, steps = cfg.model, lamb["max_time_steps"]
    assert recipes.RECIPES[name].data == data
    pairs = {
        "model": ("mogrifier_lstm_mos" if lamb["mos_num_components"] else "mogrifier_lstm", m._name),
        "share_input_and_output_embeddings": (lamb["share_input_and_output_embeddings"], m.tied),
        "input_embedding_ratio": (max(1, round(lamb["input_embedding_ratio"] * m.nhid)), m.emsize),
        "mos_num_components": (lamb["mos_num_components"], m.get("n_experts", 0)),
        "token_dropout + embedding_dropout": (lamb["token_dropout"] + lamb["embedding_dropout"], m.dropoute),
        "input_dropout": (lamb["input_dropout"], m.dropouti),
        "output_dropout": (lamb["output_dropout"], m.dropout),
        "inter_layer_dropout": (lamb["inter_layer_dropout"], m.dropouth),
        "state_dropout": (lamb["state_dropout"], m.state_dropout),
        "update_dropout": (lamb["update_dropout"], m.wdrop),
        "shared_mask_dropout": (lamb["shared_mask_dropout"], m.shared_mask_dropout),
        "num_layers": (lamb["num_layers"], m.nlayers),
        "lstm_skip_connection": ("sum" if lamb["lstm_skip_connection"] else "last", m.layer_outputs),
        "feature_mask_rounds": (lamb["feature_mask_rounds"], m.mogrifier_rounds),
        "feature_mask_rank": (lamb["feature_mask_rank"], m.mogrifier_rank),
        "cap_input_gate": ("capped" if lamb["cap_input_gate"] else "standard", m.input_gate),
        "forget_bias": (lamb["forget_bias"], m.forget_bias),
        "drop_state_probability": (lamb["drop_state_probability"], m.drop_state_probability),
        "activation_norm_penalty": (lamb["activation_norm_penalty"], cfg.criterion.alpha + cfg.criterion.beta),
        "optimizer_type": ("rmsprop", "rmsprop" if cfg.optimizer._name == "averaged_adam" else cfg.optimizer._name),
        "rmsprop_beta2": ((0.0, lamb["rmsprop_beta2"]), tuple(ast.literal_eval(cfg.optimizer.adam_betas))),
        "rmsprop_epsilon / steps": (lamb["rmsprop_epsilon"] / steps, cfg.optimizer.adam_eps),
        "l2_penalty / steps": (lamb["l2_penalty"] / steps, cfg.optimizer.wdecay),
        "max_grad_norm / steps": (lamb["max_grad_norm"] / steps, cfg.optimization.clip_norm),
        "trigger_averaging_turns": (lamb["trigger_averaging_turns"], cfg.optimizer.trigger_averaging_turns),
        "trigger_averaging_at_the_latest": (lamb["trigger_averaging_at_the_latest"],
                                            cfg.optimizer.trigger_averaging_at_the_latest),
        "learning_rate": (lamb["learning_rate"], cfg.optimization.lr[0]),
        "learning_rate_decay": (lamb["learning_rate_decay"], 1.0 if (cfg.lr_scheduler._name, list(cfg.lr_scheduler.when))
                                == ("awd_when", []) else None),
        "batch_size": (lamb["batch_size"], cfg.dataset.batch_size),
        "max_time_steps": ((steps, True), (cfg.task.bptt, cfg.task.fixed_bptt)),
        "steps_per_turn": (lamb["steps_per_turn"], cfg.dataset.validate_interval_updates),
        "turns": (lamb["turns"] * lamb["steps_per_turn"], cfg.optimization.max_update),
        "seed": (lamb["seed"], cfg.common.seed),
        # evaluation.py: valid read by min(batch_size, size // min_non_episodic_eval_examples_per_stripe) streams
        "eval batch": (max(1, min(lamb["batch_size"], VALID_TOKENS[data] // lamb["min_non_episodic_eval_examples_per_stripe"])),
                       cfg.task.eval_batch_size),
    }
    if lamb["mos_num_components"]:
        pairs["downprojected_output_dropout"] = (lamb["downprojected_output_dropout"], m.dropoutl)
        pairs["last layer"] = (m.nhid, m.nhidlast)  # lamb's layers are all hidden_size wide
    wrong = {k: v for k, v in pairs.items() if v[0] != v[1]}
    assert not wrong, f"{name}: lamb option: (lamb, recipe) {wrong}"


class _Task:
    def __init__(self, n):
        self.target_dictionary = self.source_dictionary = Dictionary()
        while len(self.target_dictionary) < n:
            self.target_dictionary.add_symbol(f"w{len(self.target_dictionary)}")


def parameters(cfg, hidden):
    """Trainable parameters of the recipe's model at hidden size `hidden` (lamb's embedding size
    rule for the embedding), over lamb's vocabulary."""
    from fairseq.models import MODEL_DATACLASS_REGISTRY, MODEL_REGISTRY

    model_cfg, ratio = cfg["model"], cfg["ratio"]
    values = dict(model_cfg, nhid=hidden, emsize=max(1, round(ratio * hidden)))
    if "nhidlast" in values:
        values["nhidlast"] = hidden
    if values["emsize"] != hidden and "nhidlast" not in values:
        pytest.fail("an untied or projected output is not what these recipes use")
    name = values.pop("_name")
    model_class, dataclass = MODEL_REGISTRY[name], MODEL_DATACLASS_REGISTRY[name]
    with torch.device("meta"):  # sizes only
        model = model_class.build_model(dataclass(**values), _Task(cfg["vocab"]))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(LAMB))
def test_hidden_size_is_the_largest_within_lambs_parameter_budget(name):
    """lamb_flags._budget_hidden_size: the largest hidden size whose model has at most num_params
    trainable parameters."""
    from omegaconf import OmegaConf

    _, text, data = LAMB[name]
    lamb = lamb_config(text)
    assert lamb["hidden_size"] == [-1]  # sized by the budget
    composed = recipes.compose(name, ["task.data=x"])
    cfg = {"model": {k: v for k, v in OmegaConf.to_container(composed.model).items() if not str(v).startswith("${")},
           "ratio": lamb["input_embedding_ratio"], "vocab": LAMB_VOCAB[data]}
    hidden = composed.model.nhid
    assert parameters(cfg, hidden) <= lamb["num_params"] < parameters(cfg, hidden + 1)


def test_temperature_search_is_lambs():
    """evaluation.py: multipliers 1.06, 1.04, ... of the logits, not below -eval_softmax_temperature,
    stopping two steps after the best; the tool returns the temperature T = 1 / multiplier."""
    from awd_fairseq.tools.softmax_temperature import LAMB_LOWEST_MULTIPLIER, LAMB_TOKENS

    lamb = lamb_config(PTB_24M)
    assert LAMB_LOWEST_MULTIPLIER == -lamb["eval_softmax_temperature"]
    assert LAMB_TOKENS == lamb["eval_softmax_temperature_estimation_num_tokens"]
    assert math.isclose(1 / LAMB_LOWEST_MULTIPLIER, 1.25)
