"""Text to token ids: a small English tokenizer, the vocabulary, and padded id matrices.

The tokenizer (`tokenize`) is deliberately simple and dependency-free, so the vocabulary saved
with a checkpoint can be applied to new text anywhere with the same few lines:

1. HTML line breaks (`<br />`, common in IMDB reviews) become spaces;
2. the text is lowercased (`lowercase=true`, the default);
3. a token is a run of letters, digits or underscores with inner apostrophes kept together
   ("don't", "it's"), or any other single non-space character: punctuation such as "!" or "?"
   carries sentiment, so it is kept as a token of its own.

Ids: `<pad>` is 0 and `<unk>` is 1; the rest of the vocabulary follows by falling frequency in
the training split (ties alphabetical), so the same data always gives the same ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
TOKEN_PATTERN = r"\w+(?:'\w+)*|[^\w\s]"
TOKENIZER_VERSION = 1  # bump when the rules above change: caches and checkpoints record it

_TOKEN = re.compile(TOKEN_PATTERN)
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split `text` into tokens by the rules in this module's docstring."""
    text = _BREAK.sub(" ", text)
    return _TOKEN.findall(text.lower() if lowercase else text)


@dataclass
class Corpus:
    """Tokenised documents: every document's ids into `words`, concatenated, plus offsets.

    One flat int32 array instead of a list per document keeps 50,000 reviews compact, quick to
    cache with numpy and quick to count (`np.bincount`) when a vocabulary is built.
    """

    words: list[str]  # every distinct token of the corpus
    ids: np.ndarray  # int32: the documents' tokens as indices into `words`, concatenated
    offsets: np.ndarray  # int64 (n + 1,): document i is ids[offsets[i]:offsets[i + 1]]
    labels: np.ndarray  # int64 (n,): class indices

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def tokenize_corpus(texts: Iterable[str], labels: Sequence[int], lowercase: bool) -> Corpus:
    """Tokenise every text once; `texts` may be a generator (files read one by one)."""
    index: dict[str, int] = {}
    ids: list[int] = []
    offsets = [0]
    for text in texts:
        ids.extend(index.setdefault(t, len(index)) for t in tokenize(text, lowercase))
        offsets.append(len(ids))
    return Corpus(
        words=list(index),
        ids=np.asarray(ids, dtype=np.int32),
        offsets=np.asarray(offsets, dtype=np.int64),
        labels=np.asarray(labels, dtype=np.int64),
    )


class Vocabulary:
    """Token <-> id, with `<pad>` = 0 and `<unk>` = 1. `tokens` is what checkpoints store."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError(f"a vocabulary starts with {PAD}, {UNK}; got {list(tokens[:2])}")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(
        cls, counts: Mapping[str, int], min_freq: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """Tokens seen at least `min_freq` times, most frequent first; `max_size` counts the
        two special tokens too."""
        kept = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            kept = kept[: max(0, max_size - 2)]
        return cls([PAD, UNK, *kept])

    def lookup(self, tokens: Iterable[str]) -> list[int]:
        return [self.index.get(t, UNK_ID) for t in tokens]

    def encode(
        self, texts: Sequence[str], lowercase: bool = True, max_len: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """New texts as a padded id matrix and lengths: what a trained model's forward takes."""
        corpus = tokenize_corpus(texts, [0] * len(texts), lowercase)
        mapping = np.asarray(self.lookup(corpus.words), dtype=np.int64)
        return pad_documents(corpus, np.arange(len(texts)), mapping, max_len)


def build_vocabulary(
    corpus: Corpus, docs: np.ndarray, min_freq: int, max_size: int | None
) -> tuple[Vocabulary, np.ndarray]:
    """A vocabulary from documents `docs` only (the training split), and the map from corpus
    word index to vocabulary id (`<unk>` for words it left out or never saw)."""
    in_docs = np.zeros(len(corpus), dtype=bool)
    in_docs[docs] = True
    token_in_docs = np.repeat(in_docs, corpus.lengths())
    counts = np.bincount(corpus.ids[token_in_docs], minlength=len(corpus.words))
    seen = np.flatnonzero(counts >= min_freq)
    vocab = Vocabulary.build({corpus.words[i]: int(counts[i]) for i in seen}, min_freq, max_size)
    return vocab, np.asarray(vocab.lookup(corpus.words), dtype=np.int64)


def pad_documents(
    corpus: Corpus, docs: np.ndarray, mapping: np.ndarray, max_len: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Documents `docs` as an int64 (n, T) matrix padded with `<pad>` on the right, and their
    lengths. Each keeps its first `max_len` tokens; an empty one becomes a single `<unk>`, so
    every length is at least 1 (packing and "last step" readouts need one)."""
    docs = np.asarray(docs, dtype=np.int64)
    starts, full = corpus.offsets[docs], corpus.lengths()[docs]
    lengths = np.minimum(full, max_len) if max_len else full.copy()
    width = int(max(1, lengths.max(initial=1)))
    out = np.full((len(docs), width), PAD_ID, dtype=np.int64)
    rows = np.repeat(np.arange(len(docs)), lengths)
    cols = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, cols] = mapping[corpus.ids[np.repeat(starts, lengths) + cols]]
    empty = lengths == 0
    out[empty, 0], lengths[empty] = UNK_ID, 1
    return out, lengths


def split_off(docs: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(kept, split off): `count` random documents split off; both sorted."""
    perm = rng.permutation(docs)
    return np.sort(perm[count:]), np.sort(perm[:count])
