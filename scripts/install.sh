#!/usr/bin/env bash
# Installs everything awd_fairseq needs into a virtual environment (default: .venv in the checkout).
# An existing torch or fairseq in that environment is left alone.
set -euo pipefail
VENV=${1:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}       # the CPU wheel on these machines; set your own elsewhere
FAIRSEQ_SPEC=${FAIRSEQ_SPEC:-fairseq-fixed==0.12.3.1}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "[install] torch ($TORCH_SPEC)"
  pip_install "$TORCH_SPEC"
fi
pip_install numpy cython setuptools wheel
if ! "$PY" -c "import fairseq" 2>/dev/null; then
  # fairseq 0.12.2 does not build on Python >= 3.11; fairseq-fixed is fairseq's main branch packaged
  # for it. Its build needs the torch above, hence no build isolation; --no-deps keeps torchaudio
  # (and the torch it would pull) out.
  echo "[install] fairseq ($FAIRSEQ_SPEC, compiled from source: a few minutes)"
  pip_install --no-build-isolation --no-deps "$FAIRSEQ_SPEC"
fi
# fairseq's run-time needs (scikit-learn: fairseq imports it at start-up), ours, and the tests';
# matplotlib for scripts/compare_lms.py's plots, tensorboardX for fairseq's --tensorboard-logdir.
pip_install hydra-core==1.3.2 omegaconf==2.3.0 bitarray sacrebleu regex tqdm cffi scikit-learn packaging \
  sentencepiece pytest pytest-xdist matplotlib tensorboardX
pip_install --no-deps --no-build-isolation -e .
"$PY" -c "import fairseq, torch, awd_fairseq; print('[install] ok: torch', torch.__version__, 'fairseq', fairseq.__version__)"
