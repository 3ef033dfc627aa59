"""Queries: which masks to evaluate, what to measure, and running the model on them.

:mod:`~compattr.query.masks`
    :func:`sample_masks`, :func:`paired_masks` (complementary pairs, for Shapley values) and
    the paper's :func:`budget` rule.
:mod:`~compattr.query.values`
    Value functions: what a query measures (class logit, log-likelihood, multiple choice...).
:mod:`~compattr.query.evaluator`
    :class:`MaskedModel`: a model, a masker, a value and inputs, evaluated on many masks per
    forward pass (:func:`bind` makes one from the arguments of :func:`compattr.explain`, or
    passes a set function through); :mod:`~compattr.query.prefix` adds the key/value cache of a fixed prompt
    prefix (:class:`PrefixCache`). ``Query`` is its earlier name (the same class).
:mod:`~compattr.query.runner`
    :func:`run_queries`: any set function on a mask matrix, in chunks, across processes.
:mod:`~compattr.query.cache`
    :class:`QueryCache`: the on-disk store that makes a run resumable, one per fingerprint
    under a cache root (:func:`cache_folder`).
"""

from ..features.base import input_device
from .cache import CacheCorruptError, CacheMismatchError, QueryCache, cache_folder
from .evaluator import MaskedModel, Query, bind, model_fingerprint
from .masks import budget, paired_masks, sample_masks
from .prefix import PrefixCache
from .runner import run_queries

__all__ = [
    "CacheCorruptError",
    "CacheMismatchError",
    "MaskedModel",
    "PrefixCache",
    "Query",
    "QueryCache",
    "bind",
    "budget",
    "cache_folder",
    "input_device",
    "model_fingerprint",
    "paired_masks",
    "run_queries",
    "sample_masks",
]
