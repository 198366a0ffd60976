"""fastai's vocabulary (`itos`, index -> token) against a fairseq `Dictionary`.

A fairseq dictionary holds its four special symbols first (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3)
and then dict.txt's words in file order. fastai's `itos` (fastai/text/core.py, `Vocab` in fastai
v1's text/transform.py) starts with its special tokens, `xxunk xxpad xxbos xxeos xxfld xxrep
xxwrep xxup xxmaj` in fastai 2 (other orders, and no `xxeos`, in older versions), then the words by
frequency. The special symbols are matched by meaning, not by position:

    fairseq   fastai    why
    </s>      xxbos     this plugin's stream has `</s>` at its start and after every line
                        (tasks/token_stream.py); fastai's stream has `xxbos` before every
                        document. With one document per line the two streams agree token for token
    <unk>     xxunk     the unknown word
    <pad>     xxpad     padding (never scored)
    <s>       xxeos     never in this plugin's streams; fastai does not add `xxeos` by default.
                        Without `xxeos` (older vocabularies), `xxfld` takes its place

Every other fastai token becomes one dict.txt line, in itos order, so the imported model's rows
are a permutation of fastai's: its distribution over the vocabulary is fastai's, normaliser
included. fairseq reads dict.txt one `word count` a line and splits text on whitespace, so a token
holding whitespace is written with it escaped (`fairseq_word`), and a token fairseq cannot hold (the
empty string, a duplicate, a fairseq special symbol) is written as `<fastai:INDEX>`, keeping its row.

Re-alignment (`rows_for_dictionary`) is fastai's `match_embeds` (fastai/text/learner.py): each row
of another dictionary takes the row of the same word, a word fastai lacks gets the mean embedding
and the mean output bias.
"""
import logging
import pickle
from typing import Dict, List, Sequence, Tuple

import torch
from fairseq.data import Dictionary

logger = logging.getLogger(__name__)

# fairseq's special symbols, by the Dictionary method giving their index -> the fastai tokens
# standing for them, the first present wins
SPECIALS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("bos", ("xxeos", "xxfld")),  # <s>
    ("pad", ("xxpad",)),  # <pad>
    ("eos", ("xxbos",)),  # </s>
    ("unk", ("xxunk",)),  # <unk>
)
REQUIRED = ("xxunk", "xxpad", "xxbos")  # in every fastai vocabulary
NEW_WORD = -1  # a row without a fastai counterpart: the mean embedding and bias

_ESCAPES = {" ": "\u2581", "\n": "\\n", "\t": "\\t", "\r": "\\r"}  # ' ' as fastai 2's replace_space


def fairseq_word(token: str) -> str:
    """`token` with every whitespace character escaped, so fairseq's whitespace split keeps it whole:
    a space becomes fastai 2's U+2581, a newline / tab / return `\\n` / `\\t` / `\\r`, any other
    `\\uXXXX`."""
    if not any(c.isspace() for c in token):
        return token
    return "".join(_ESCAPES.get(c, f"\\u{ord(c):04x}") if c.isspace() else c for c in token)


class _ListOnly(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it refers to {module}.{name}")


def load_itos(path: str) -> List[str]:
    """fastai's `itos_*.pkl`: a pickled list of strings, read without running any pickled code."""
    with open(path, "rb") as f:
        try:
            itos = _ListOnly(f).load()
        except pickle.UnpicklingError as e:
            raise ValueError(f"{path} is not a plain pickled list of tokens ({e}): pass fastai's itos .pkl") from None
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise ValueError(f"{path} holds a {type(itos).__name__}, not a list of tokens: pass fastai's itos .pkl")
    return itos


def special_rows(itos: Sequence[str]) -> Dict[str, int]:
    """{"bos" / "pad" / "eos" / "unk": the fastai index of that fairseq special} (see the table above)."""
    index = {t: i for i, t in reversed(list(enumerate(itos)))}  # first occurrence
    missing = [t for t in REQUIRED if t not in index]
    if missing:
        raise ValueError(f"the vocabulary has no {missing[0]!r}: pass the itos .pkl saved with the fastai model")
    return {role: next((index[t] for t in tokens if t in index), NEW_WORD) for role, tokens in SPECIALS}


def dictionary_words(itos: Sequence[str]) -> List[Tuple[str, int]]:
    """dict.txt's lines for `itos`: (word, fastai index) for every token the special symbols do not
    take, in itos order."""
    taken = set(special_rows(itos).values())
    plain = Dictionary()
    seen = set(plain.symbols[: plain.nspecial])  # <s> <pad> </s> <unk>
    words, renamed = [], 0
    for i, token in enumerate(itos):
        if i in taken:
            continue
        word = fairseq_word(token)
        if not word or word in seen or word.startswith("#fairseq:"):
            word, renamed = f"<fastai:{i}>", renamed + 1
        seen.add(word)
        words.append((word, i))
    if renamed:
        logger.warning("%d fastai tokens fairseq cannot hold (empty, duplicate or reserved) kept as <fastai:INDEX>",
                       renamed)
    return words


def write_dict(words: Sequence[Tuple[str, int]], path: str) -> None:
    """dict.txt in fairseq's `word count` format. fastai keeps no counts: every count is 1."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{word} 1\n" for word, _ in words)


def rows_for_dictionary(dictionary: Dictionary, itos: Sequence[str]) -> torch.Tensor:
    """(len(dictionary),) int64: for every row of `dictionary`, its fastai index, or NEW_WORD."""
    by_word = {fairseq_word(t): i for i, t in reversed(list(enumerate(itos)))}  # first occurrence
    by_word.update(dictionary_words(itos))  # and the <fastai:INDEX> names
    rows = [by_word.get(dictionary[r], NEW_WORD) for r in range(len(dictionary))]
    for role, i in special_rows(itos).items():
        rows[getattr(dictionary, role)()] = i
    return torch.tensor(rows, dtype=torch.long)
