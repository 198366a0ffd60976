"""The plugin adds no device-to-host read to a training update: fairseq-train in this process under
the op counter (awd_fairseq/tools/bench/op_count.py; per update = a run of 4 updates minus a run of 2),
awd_lstm averaging (NT-ASGD's averaging phase) and qrnn. The reads left are fairseq's trainer's
own two gradient-norm checks; none in fairseq's meters (which read every tensor a criterion logs,
each update) and none in the plugin's code."""
import pytest

from awd_fairseq.tools.bench import op_count

from helpers import USER_DIR

ARCHS = {
    "awd_lstm": ["--arch", "awd_lstm", "--emsize", "16", "--nhid", "24", "--asgd-from-start"],
    "qrnn": ["--arch", "qrnn", "--emsize", "16", "--nhid", "24", "--nlayers", "2", "--disable-validation"],
}


def per_update(data, tmp_path, flags):
    def run(updates, counter):
        save_dir = tmp_path / f"run{updates}"
        op_count.fairseq_train([
            data, "--user-dir", USER_DIR, "--cpu", "--num-workers", "0", "--seed", "1", "--task",
            "awd_language_modeling", *flags, "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd",
            "--lr-scheduler", "awd_when", "--lr", "30", "--clip-norm", "0.25", "--batch-size", "10", "--bptt", "20",
            "--max-update", updates, "--no-save", "--save-dir", save_dir, "--log-interval", "1000",
            "--log-format", "simple", "--no-progress-bar",
        ])
    return op_count.per_update(run, 2, 4).per(2)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_no_read_per_update_from_the_plugin(tiny_bin, tmp_path, arch):
    per = per_update(tiny_bin, tmp_path, ARCHS[arch])
    by_label = {}
    for (label, where), n in per["reads"].items():
        by_label.setdefault(label, []).append((where, n))
    plugin = {label: reads for label, reads in by_label.items() if label.startswith("plugin:")}
    assert not plugin, plugin
    assert "fairseq:logging/meters.py" not in by_label, by_label
    assert sum(per["reads"].values()) == 2, by_label  # fairseq's trainer: isfinite(grad norm), twice
    assert sum(per["ops"].values()) > 100  # the counter did see the updates
