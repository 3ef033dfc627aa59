"""Text units as features: tokens, words, sentences or any character spans of one text.

The text is tokenized once, with character offsets; each unit owns the tokens that overlap its
characters, and masking a unit replaces its tokens by the tokenizer's replacement token
(``[UNK]`` as in the paper, else ``[MASK]``, else the pad token; or any token you name). A
fixed ``prefix`` and ``suffix`` (a chat template, an instruction, "Answer:") are tokenized with
the text but never masked; a unit that shares a token with them (a prefix joined to the text
without whitespace) is refused, since masking it would leave that token.

Works for Hugging Face classifiers and causal LMs with a fast tokenizer (one that returns
offsets)::

    words = Words(tokenizer, "a gripping, heartfelt film", prefix=chat_start, suffix=chat_end)
    ex = compattr.explain(model, words, compattr.values.LogLikelihood())   # the words own their inputs
    masked = compattr.query.MaskedModel(model, words, compattr.values.LogLikelihood())  # masks -> outputs
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from .base import Inputs, digest, mask_rows, names_from


class TextSpans:
    """Features = character spans of ``text``; the base of :class:`Tokens`, :class:`Words`
    and :class:`Sentences`.

    Parameters
    ----------
    tokenizer : transformers.PreTrainedTokenizerFast
        Must return ``offset_mapping``.
    text : str
        The text whose units are features.
    spans : sequence of (start, end)
        Character spans of the units in ``text``, in order, not overlapping.
    names, groups : optional
        Labels (default ``'{i}:{span text}'``) and group labels (default all 0).
    prefix, suffix : str
        Fixed text before and after ``text``; never masked.
    replacement : str or int, optional
        Token (or id) that replaces masked tokens; default ``[UNK]``, else ``[MASK]``, else pad.
    add_special_tokens : bool
        Passed to the tokenizer (BOS/CLS/SEP are never masked).

    Attributes
    ----------
    n, names, groups
    inputs : dict of (1, S) tensors
        The tokenized ``prefix + text + suffix``.
    token_units : (S,) int array
        The unit of each token, ``n`` for tokens that are never masked.
    fixed_prefix : int
        Number of leading tokens that are never masked; :class:`compattr.query.MaskedModel` computes
        their key/value cache once on causal LMs.
    replacement_id : int
    """

    def __init__(
        self,
        tokenizer,
        text: str,
        spans: Sequence[tuple[int, int]] | np.ndarray,
        *,
        names: Sequence[str] | None = None,
        groups: Sequence | np.ndarray | None = None,
        prefix: str = "",
        suffix: str = "",
        replacement: str | int | None = None,
        add_special_tokens: bool = True,
    ):
        spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        if len(spans) == 0:
            raise ValueError("the text has no units to mask (empty text?).")
        if (
            (spans[:, 0] >= spans[:, 1]).any()
            or (spans[1:, 0] < spans[:-1, 1]).any()
            or spans.min() < 0
            or spans.max() > len(text)
        ):
            raise ValueError("spans must be ordered, non-empty, non-overlapping (start, end) pairs inside the text.")
        self.text, self.prefix, self.suffix = text, prefix, suffix
        self.n = len(spans)
        self.names = names_from(names, self.n, lambda i: f"{i}:{text[spans[i, 0] : spans[i, 1]]}")
        self.groups = np.zeros(self.n, np.int64) if groups is None else np.asarray(groups)
        if self.groups.shape != (self.n,):
            raise ValueError(f"got {self.groups.shape} group labels for {self.n} units.")
        self.spans = spans
        self.tokenizer = tokenizer
        self.replacement_id = _replacement_id(tokenizer, replacement)
        self.inputs, offsets = _encode(tokenizer, prefix + text + suffix, add_special_tokens)
        lo, hi = len(prefix), len(prefix) + len(text)
        self.token_units = _token_units(offsets, spans + lo, lo, hi, prefix + text + suffix)
        self._units = torch.from_numpy(self.token_units)
        self.fixed_prefix = int(np.argmax(self.token_units < self.n))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, tokens={len(self.token_units)}, replacement_id={self.replacement_id})"
        )

    def fingerprint(self) -> str:
        """Identifies the tokenized text, the unit of every token and the replacement."""
        return f"{self!r} text#{digest(self.inputs, self.token_units)}"

    @contextmanager
    def masking(self, masks: torch.Tensor, inputs: Inputs) -> Iterator[Inputs]:
        """Inputs whose row ``b`` has the tokens of the units masked in ``masks[b]`` replaced.

        Every row of ``inputs`` must begin with the tokenized text (``self.inputs``); token
        positions past it (an appended answer) are kept.

        Raises
        ------
        ValueError
            A row does not begin with the tokenized text (another text, or padding before
            it): masks pick tokens by position, so they would replace others.
        """
        masks = mask_rows(masks, self.n)
        ids = inputs if isinstance(inputs, torch.Tensor) else inputs["input_ids"]
        own = self.inputs["input_ids"][0].to(ids.device)
        if ids.shape[1] < len(own) or not torch.equal(ids[:, : len(own)], own.expand(len(ids), -1)):
            raise ValueError(
                "every row of the inputs must begin with the tokenized text (features.inputs; an answer may "
                "follow): masks pick its tokens by position. Leave inputs= out to use the text's own."
            )
        units = torch.full((ids.shape[1],), self.n, dtype=torch.long)
        units[: len(self._units)] = self._units
        keep = torch.cat([masks.bool(), masks.new_ones(len(masks), 1, dtype=torch.bool)], 1)
        keep = keep[:, units.to(masks.device)].to(ids.device)
        masked = torch.where(keep, ids, torch.full_like(ids, self.replacement_id))
        yield masked if isinstance(inputs, torch.Tensor) else {**inputs, "input_ids": masked}

    def unit_tokens(self, i: int) -> list[str]:
        """The tokens of unit ``i`` (to check what masking it replaces)."""
        ids = self.inputs["input_ids"][0][torch.from_numpy(self.token_units == i)]
        return self.tokenizer.convert_ids_to_tokens(ids.tolist())


class Tokens(TextSpans):
    """Each token of ``text`` is a feature; groups = the word (whitespace-separated) it is in.

    Tokens of whitespace alone are not features (never masked); tokens that share
    characters (the bytes of one character, in a byte-level tokenizer) are one feature.
    """

    def __init__(
        self, tokenizer, text: str, *, prefix: str = "", suffix: str = "", add_special_tokens: bool = True, **kwargs
    ):
        _, offsets = _encode(tokenizer, prefix + text + suffix, add_special_tokens)
        offsets = _trimmed(offsets, prefix + text + suffix) - len(prefix)
        solid = offsets[:, 1] > offsets[:, 0]
        inside = solid & (offsets[:, 0] >= 0) & (offsets[:, 1] <= len(text))
        straddles = solid & ~inside & (offsets[:, 1] > 0) & (offsets[:, 0] < len(text))
        if straddles.any():
            raise ValueError(
                f"a token of the text ({text[max(offsets[straddles][0, 0], 0) : offsets[straddles][0, 1]]!r}) "
                "is joined to the prefix or suffix: masking it would change them too. Separate them by a space."
            )
        spans = _merged(offsets[inside])
        super().__init__(
            tokenizer,
            text,
            spans,
            groups=_containing(spans, _regex_spans(r"\S+", text)),
            prefix=prefix,
            suffix=suffix,
            add_special_tokens=add_special_tokens,
            **kwargs,
        )


class Words(TextSpans):
    """Each word (a match of ``pattern``, default whitespace-separated) is a feature;
    groups = the sentence it is in."""

    def __init__(self, tokenizer, text: str, pattern: str = r"\S+", **kwargs):
        spans = _regex_spans(pattern, text)
        super().__init__(tokenizer, text, spans, groups=_containing(spans, _sentence_spans(text)), **kwargs)


class Sentences(TextSpans):
    """Each sentence is a feature: a sentence ends after ``.``, ``!`` or ``?`` (and any
    closing quotes or brackets) followed by whitespace, or at the end of the text. A decimal
    (3.5) or a quotation (``"Stop." Then``) stays whole; an abbreviation followed by a space
    (``Dr. Smith``) ends one (pass units of your own with :class:`TextSpans` for those)."""

    def __init__(self, tokenizer, text: str, **kwargs):
        super().__init__(tokenizer, text, _sentence_spans(text), **kwargs)


def _encode(tokenizer, text: str, add_special_tokens: bool) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """``(1, S)`` model inputs and ``(S, 2)`` character offsets of the tokens of ``text``."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("text features need a fast tokenizer (one that returns offset_mapping).")
    encoding = tokenizer(text, return_offsets_mapping=True, add_special_tokens=add_special_tokens, return_tensors="pt")
    offsets = encoding.pop("offset_mapping")[0].numpy().astype(np.int64)
    return dict(encoding), offsets


def _regex_spans(pattern: str, text: str) -> np.ndarray:
    return np.array([m.span() for m in re.finditer(pattern, text)], np.int64).reshape(-1, 2)


#: A sentence: from a non-space, up to ``.``, ``!`` or ``?`` (and closing quotes or brackets)
#: before whitespace, or up to the end of the text.
_SENTENCE = re.compile(r"\S.*?(?:[.!?]+[\"'\u2019\u201d\u00bb)\]]*(?=\s|\Z)|\Z)", re.S)


def _sentence_spans(text: str) -> np.ndarray:
    """The ``(k, 2)`` character spans of the sentences of ``text`` (:class:`Sentences`)."""
    spans = [(m.start(), m.start() + len(m.group().rstrip())) for m in _SENTENCE.finditer(text)]
    return np.array(spans, np.int64).reshape(-1, 2)


def _containing(spans: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """Index of the ``outer`` span that contains the start of each span."""
    return np.searchsorted(outer[:, 0], spans[:, 0], side="right") - 1


def _trimmed(offsets: np.ndarray, text: str) -> np.ndarray:
    """Token offsets (S, 2) into ``text`` without the whitespace at either end: a
    SentencePiece token such as ``▁great`` covers the space before its word, which belongs
    to the text before it (a prefix ending in a space). A token of whitespace alone becomes
    empty (its end at its start)."""
    solid = np.flatnonzero([not c.isspace() for c in text])  # the characters that are not whitespace
    beyond = np.r_[solid, len(text)]
    start = beyond[np.searchsorted(solid, offsets[:, 0])]  # first solid character at or after the start
    last = np.searchsorted(solid, offsets[:, 1]) - 1  # last solid character before the end
    end = np.where(last >= 0, np.r_[solid, 0][last] + 1, 0)
    return np.column_stack([start, np.maximum(end, start)])


def _merged(spans: np.ndarray) -> np.ndarray:
    """Ordered spans (K, 2) with those that overlap (or repeat) joined into one."""
    if len(spans) == 0:
        return spans
    new = np.r_[True, spans[1:, 0] >= np.maximum.accumulate(spans[:, 1])[:-1]]  # starts a new span
    first = np.flatnonzero(new)
    return np.column_stack([spans[first, 0], np.maximum.reduceat(spans[:, 1], first)])


def _token_units(offsets: np.ndarray, spans: np.ndarray, lo: int, hi: int, text: str) -> np.ndarray:
    """The unit whose span overlaps each token most; ``n`` for tokens that overlap no unit,
    or whose characters other than whitespace at either end (:func:`_trimmed`) overlap the
    fixed text of ``text`` outside ``[lo, hi)``.

    Raises
    ------
    ValueError
        A unit shares a token with the fixed text (a prefix or suffix joined to the text
        without whitespace, ``"w9" + "w1 w2"`` tokenized ``w9w1``), a token holds text of two
        units (a byte-level tokenizer merging characters of neighbouring units not separated
        by whitespace), or a unit owns no token (its characters lie in tokens another unit
        overlaps more): masking it would replace none or only some of its tokens, and its
        attribution would be silently wrong.
    """
    start, end = offsets[:, :1], offsets[:, 1:]
    overlap = np.minimum(end, spans[:, 1]) - np.maximum(start, spans[:, 0])
    units = np.where(overlap.max(1) > 0, overlap.argmax(1), len(spans))
    solid = _trimmed(offsets, text)
    fixed = (solid[:, 1] > solid[:, 0]) & ((solid[:, 0] < lo) | (solid[:, 1] > hi))
    name = lambda i: repr(text[spans[i, 0] : spans[i, 1]])
    shared = np.flatnonzero((overlap[fixed] > 0).any(0))
    if shared.size:
        raise ValueError(
            f"unit {shared[0]} ({name(shared[0])}) shares a token with the prefix or suffix, so masking "
            "it would leave that token: separate the prefix and suffix from the text by whitespace."
        )
    units[fixed] = len(spans)
    # a token whose text (less whitespace at its ends) lies in two units: masking either unit
    # replaces it whole or not at all, showing part of one or hiding part of the other
    holds = np.minimum(solid[:, 1:], spans[:, 1]) - np.maximum(solid[:, :1], spans[:, 0]) > 0  # (tokens, units)
    straddles = np.flatnonzero(holds.sum(1) > 1)
    if straddles.size:
        t = int(straddles[0])
        joined = np.flatnonzero(holds[t])
        raise ValueError(
            f"token {t} ({text[offsets[t, 0] : offsets[t, 1]]!r}) holds text of units {joined[0]} ({name(joined[0])}) "
            f"and {joined[1]} ({name(joined[1])}): masking either would replace it whole or not at all. "
            "Use units the tokenizer does not join (coarser units, or Tokens)."
        )
    tokenless = np.setdiff1d(np.arange(len(spans)), units)
    if tokenless.size:
        raise ValueError(
            f"unit {tokenless[0]} ({name(tokenless[0])}) owns no token (the tokenizer joins it to a "
            "neighbour): masking it would change nothing. Use coarser units or Tokens."
        )
    return units.astype(np.int64)


def _replacement_id(tokenizer, replacement: str | int | None) -> int:
    if isinstance(replacement, (int, np.integer)):
        return int(replacement)
    if replacement is not None:
        token_id = tokenizer.convert_tokens_to_ids(replacement)
        if token_id is None or (token_id == tokenizer.unk_token_id and replacement != tokenizer.unk_token):
            raise ValueError(f"replacement token {replacement!r} is not in the vocabulary.")
        return int(token_id)
    for token_id in (tokenizer.unk_token_id, tokenizer.mask_token_id, tokenizer.pad_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError(
        "the tokenizer has no [UNK], [MASK] or pad token to replace masked units with; "
        "pass replacement='<token>' (or a token id)."
    )
