"""The original README's experiments as fairseq-hydra-train configurations (the YAML files in this
folder; docs/recipes.md), and the named architectures' values (model/<arch>.yaml):

    fairseq-hydra-train --config-dir awd_fairseq/config --config-name awd recipe=ptb_awd_lstm \\
        task.data=data-bin/ptb common.user_dir=awd_fairseq
"""
