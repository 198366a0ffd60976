# Two commands on a fresh machine:  `make demo` (install, prepare the embedded WikiText-2, train a
# small AWD-LSTM for one epoch on the CPU, score it with fairseq-eval-lm) and `make test`.
# `DEMO_MAX_UPDATE=200 make demo` stops the demo after 200 updates (CI does: .ci/run).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test
install: $(VENV)/.awd_fairseq_installed

$(VENV)/.awd_fairseq_installed: scripts/install.sh setup.py
	bash scripts/install.sh $(VENV)
	touch $@

demo: install
	PATH=$(abspath $(VENV))/bin:$$PATH bash scripts/demo.sh

test: install
	$(PY) -m pytest tests -q -n auto --dist loadfile
