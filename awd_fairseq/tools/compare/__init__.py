"""Compare language models trained and scored by fairseq on the same data: this plugin's awd_lstm
and qrnn against fairseq's transformer_lm and lstm_lm (scripts/compare_lms.py; docs/comparison.md)."""
