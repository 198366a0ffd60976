"""The original README's experiments as fairseq-hydra-train configurations (the YAML files in this
folder) and the commands that run them (`recipes.py`, `flags.py`); see docs/recipes.md.

    fairseq-hydra-train --config-dir awd_fairseq/config --config-name ptb_awd_lstm \\
        task.data=data-bin/ptb common.user_dir=awd_fairseq
"""
