"""Corpus preparation for awd_fairseq (raw text -> fairseq data-bin). Registers nothing with fairseq."""
