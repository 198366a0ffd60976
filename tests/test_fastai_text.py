"""fastai's text rules without fastai (awd_fairseq/tools/fastai_text.py): against the examples
fastai documents for each rule (its text.core notebook), the whole preparation written out, the
backward text, the script; and, where fastai is installed, against fastai's own rules and
tokenizer on random text."""
import random
import subprocess
import sys

import pytest

from awd_fairseq.tools import fastai_text as ft
from awd_fairseq.tools.fastai_vocab import fairseq_word
from helpers import REPO


@pytest.mark.parametrize("rule, text, expected", [
    (ft.replace_rep, "aa", "aa"),
    (ft.replace_rep, "aaaa", " xxrep 4 a "),
    (ft.replace_wrep, "ah ah", "ah ah"),
    (ft.replace_wrep, "ah ah ah", " xxwrep 3 ah "),
    (ft.replace_wrep, "ah ah ah ah", " xxwrep 4 ah "),
    (ft.replace_wrep, " ah ah ah ah ", " xxwrep 4 ah  "),
    (ft.replace_wrep, "ah ah ah ah.", " xxwrep 4 ah ."),
    (ft.replace_wrep, "ah ah ahi", "ah ah ahi"),
    (ft.spec_add_spaces, "#fastai", " # fastai"),
    (ft.spec_add_spaces, "/fastai", " / fastai"),
    (ft.spec_add_spaces, "\\fastai", " \\ fastai"),
    (ft.rm_useless_spaces, "a  b   c", "a b c"),
    (ft.fix_html, "#39;bli#146;", "'bli'"),
    (ft.fix_html, "Sarah amp; Duck...", "Sarah & Duck \u2026"),
    (ft.fix_html, "a nbsp; #36;", "a   $"),
    (ft.fix_html, '\\" <unk>', '" xxunk'),
    (ft.fix_html, "quot;  @.@  @-@ ", "' .-"),
    (ft.fix_html, "<br />text\\n", "\ntext\n"),
    (ft.replace_all_caps, "I'M SHOUTING", "xxup i'm xxup shouting"),
    (ft.replace_all_caps, "I'm speaking normally", "I'm speaking normally"),
    (ft.replace_all_caps, "I am speaking normally", "i am speaking normally"),
    (ft.replace_maj, "Jeremy Howard", "xxmaj jeremy xxmaj howard"),
    (ft.replace_maj, "I don't think there is any maj here", "i don't think there is any maj here"),
])
def test_rule_on_fastai_documented_examples(rule, text, expected):
    assert rule(text) == expected


def test_whitespace_preparation_written_out():
    doc = "The Game @-@ Boy was released in JAPAN !!!! <unk> sold sold sold well"
    assert ft.prepare([doc, ""]) == [
        "xxmaj the game-boy was released in xxup japan xxrep 4 ! xxunk xxwrep 3 sold well", ""]


def test_backwards_reverses_documents_and_tokens():
    assert ft.prepare(["Ab c", "d EF"], backwards=True) == ["ef xxup d", "c ab xxmaj"]


def test_fairseq_word_escapes_whitespace_only():
    assert [fairseq_word(t) for t in ["plain", "two words", "\n", "\t\r", "\u00a0"]] == [
        "plain", "two\u2581words", "\\n", "\\t\\r", "\\u00a0"]


def test_script_writes_one_line_per_document(tmp_path):
    (tmp_path / "in.txt").write_text("The Cat\n\nSAT SAT SAT\n", encoding="utf-8")
    cmd = [sys.executable, str(REPO / "scripts" / "prepare_fastai_text.py"), str(tmp_path / "in.txt"),
           "--tokenizer", "whitespace", "--backwards", "--output", str(tmp_path / "out.txt")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "sat xxup 3 xxwrep\n\ncat xxmaj the xxmaj\n"


PIECES = ["the", "The", "THE", "I", "a", "A", "word", "Word", "WORD", "aaaa", "!!!", "...", "#39;", "amp;", "<unk>",
          " @-@ ", " @.@ ", "/", "#", "\\", "  ", " ", "\n", "quot;", "&lt;", "nbsp;", "OK!", "\u00c9t\u00e9", "x",
          "xx", "1,000", "@,@", "U.S.", "McDonald", "iPhone", "<br />", "\\n", '\\"', "--", "the the the"]


def random_texts(n, seed=0):
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) + rng.choice(["", " ", "  "]) for _ in range(rng.randint(1, 12)))
            for _ in range(n)]


def test_rules_equal_fastai_rules():
    core = pytest.importorskip("fastai.text.core")
    for text in random_texts(5000):
        theirs = text
        for rule in core.defaults.text_proc_rules:
            theirs = rule(theirs)
        assert "xxbos " + ft.apply_rules(text) == theirs, text


def test_fastai_tokenizer_route_is_fastai_tokens_without_the_leading_xxbos():
    core = pytest.importorskip("fastai.text.core")
    texts = random_texts(200, seed=1) + ["The U.S. game, released in JAPAN, was state-of-the-art!!!! Don't."]
    tok = core.WordTokenizer()
    expected = [" ".join(fairseq_word(t) for t in core.tokenize1(text, tok)[1:]) for text in texts]
    assert ft.prepare(texts, tokenizer="fastai") == expected
