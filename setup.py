"""awd_fairseq: the AWD-LSTM / QRNN language-modelling toolkit as a fairseq plugin.

fairseq itself is not listed in install_requires on purpose: the PyPI release does not build
on Python >= 3.11, and `scripts/install.sh` (behind `make install`) builds a working one. Users
who already have fairseq >= 0.12 install this package with `pip install --no-deps -e .` or
simply pass `--user-dir /path/to/awd_fairseq` to the fairseq command-line tools.

Python 3.11 or later: the install path (torch 2.13 and fairseq-fixed 0.12.3.1, which is packaged
for Python 3.11+) and the test suite run there and nowhere older. With a working fairseq on an
older Python, `--user-dir /path/to/awd_fairseq` works without installing; it is not tested.
"""
from setuptools import find_packages, setup

setup(
    name="awd_fairseq",
    version="0.1.0",
    description="AWD-LSTM and QRNN language models (Merity et al. 2017, 2018) for fairseq",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    packages=find_packages(include=["awd_fairseq", "awd_fairseq.*"]),
    package_data={"awd_fairseq": ["config/*.yaml", "config/*/*.yaml"]},  # the fairseq-hydra-train recipes
    python_requires=">=3.11",
    install_requires=["torch>=1.13", "numpy"],
    extras_require={"spm": ["sentencepiece"], "test": ["pytest"]},
)
