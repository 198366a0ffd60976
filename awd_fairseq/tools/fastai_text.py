"""Text prepared as fastai prepares it for its language models, one document per line, ready for
`fairseq-preprocess --srcdict` with an imported model's dict.txt (fastai_import.py).

fastai 2 (fastai/text/core.py, `defaults.text_proc_rules`) rewrites every document with these rules,
in this order, then tokenizes it with spaCy:

    fix_html           HTML entities and WikiText's ` @-@ ` / ` @.@ ` joined, `<unk>` -> xxunk
    replace_rep        a character repeated 3+ times: `xxrep N c`
    replace_wrep       a word repeated 3+ times: `xxwrep N word`
    spec_add_spaces    spaces around / # and backslash
    rm_useless_spaces  runs of spaces -> one
    replace_all_caps   a word in capitals: `xxup word` (lower-cased)
    replace_maj        a capitalised word: `xxmaj word` (lower-cased)
    lowercase          everything lower-cased, `xxbos` in front

Here the same rules are written out (`apply_rules`), without fastai. Two tokenizers follow them:
`whitespace`, which splits the rewritten text on whitespace (right for text that is tokenized
already, such as WikiText), and `fastai`, fastai's own spaCy tokenizer (`fastai.text.core.
WordTokenizer`, where fastai is installed), which also splits punctuation off words. The leading
`xxbos` is dropped: the fairseq stream's `</s>` before every line stands for it (fastai_vocab.py).
A token holding whitespace is escaped as in dict.txt (`fairseq_word`).

A backward model (fastai's `wt103-bwd`) reads fastai's whole stream reversed: `reverse_documents`
puts the last document first and every document's tokens in reverse order, which makes fairseq's
stream (`</s>` + each line + `</s>`) fastai's flipped one.
"""
import html
import re
from typing import Callable, Iterable, List, Sequence

from .fastai_vocab import fairseq_word

UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ = (
    "xxunk xxpad xxbos xxeos xxfld xxrep xxwrep xxup xxmaj".split())

# fix_html's replacements, applied one after the other before unescaping HTML
_HTML = (("#39;", "'"), ("amp;", "&"), ("#146;", "'"), ("nbsp;", " "), ("#36;", "$"), ("\\n", "\n"),
         ("quot;", "'"), ("<br />", "\n"), ('\\"', '"'), ("<unk>", UNK), (" @.@ ", "."), (" @-@ ", "-"),
         ("...", " \u2026"))
_REP = re.compile(r"(\S)(\1{2,})")  # a character, then itself twice or more
_WREP = re.compile(r"(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)")  # a word three times or more
_SPEC = re.compile(r"([/#\\])")
_SPACES = re.compile(" {2,}")
_ALL_CAPS = re.compile(r"(\s|^)([A-Z]+[^a-z\s]*)(?=(\s|$))")
_MAJ = re.compile(r"(\s|^)([A-Z][^A-Z\s]*)(?=(\s|$))")


def fix_html(text: str) -> str:
    for old, new in _HTML:
        text = text.replace(old, new)
    return html.unescape(text)


def replace_rep(text: str) -> str:
    return _REP.sub(lambda m: f" {TK_REP} {len(m.group(2)) + 1} {m.group(1)} ", text)


def replace_wrep(text: str) -> str:
    def repl(m):
        word, middle, end = m.groups()
        return f" {TK_WREP} {len(middle.split()) + 2} {word} {end}"

    return _WREP.sub(repl, text)


def spec_add_spaces(text: str) -> str:
    return _SPEC.sub(r" \1 ", text)


def rm_useless_spaces(text: str) -> str:
    return _SPACES.sub(" ", text)


def _marked_lower(pattern: re.Pattern, mark: str) -> Callable[[str], str]:
    """A word matching `pattern` lower-cased, `mark` in front of it when longer than one letter."""

    def rule(text: str) -> str:
        def repl(m):
            space, word = m.group(1), m.group(2)
            return f"{space}{mark + ' ' if len(word) > 1 else ''}{word.lower()}"

        return pattern.sub(repl, text)

    return rule


replace_all_caps = _marked_lower(_ALL_CAPS, TK_UP)
replace_maj = _marked_lower(_MAJ, TK_MAJ)


def lowercase(text: str) -> str:
    """fastai's `lowercase` without the `xxbos` it puts in front (fairseq's `</s>` is that)."""
    return text.lower().strip()


RULES = (fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces, replace_all_caps, replace_maj,
         lowercase)


def apply_rules(text: str) -> str:
    for rule in RULES:
        text = rule(text)
    return text


def whitespace_tokenize(documents: Iterable[str]) -> Iterable[List[str]]:
    """fastai's rules, then a split on whitespace."""
    for document in documents:
        yield apply_rules(document).split()


class FastaiTokenizer:
    """fastai's own pipeline (its rules, spaCy, its post-rules), with the leading `xxbos` dropped."""

    def __init__(self):
        try:
            from fastai.text.core import TokenizeWithRules, WordTokenizer
        except ImportError as e:
            raise ImportError(f"--tokenizer fastai needs fastai and spaCy ({e}): install fastai, or pass "
                              "--tokenizer whitespace") from None
        self._tokenize = TokenizeWithRules(WordTokenizer())

    def __call__(self, documents: Iterable[str]) -> Iterable[List[str]]:
        for tokens in self._tokenize(list(documents)):
            tokens = list(tokens)
            yield tokens[1:] if tokens[:1] == [BOS] else tokens


def fastai_available() -> bool:
    try:
        import fastai.text.core  # noqa: F401
    except ImportError:
        return False
    return True


def prepare(documents: Sequence[str], tokenizer: str = "whitespace", backwards: bool = False) -> List[str]:
    """One line of fairseq tokens per document (see the module docstring)."""
    split = FastaiTokenizer() if tokenizer == "fastai" else whitespace_tokenize
    lines = [[fairseq_word(t) for t in tokens] for tokens in split(documents)]
    if backwards:
        lines = reverse_documents(lines)
    return [" ".join(tokens) for tokens in lines]


def reverse_documents(lines: Sequence[List[str]]) -> List[List[str]]:
    """The last document first, each one's tokens reversed: fastai's backward stream."""
    return [list(reversed(tokens)) for tokens in reversed(lines)]
