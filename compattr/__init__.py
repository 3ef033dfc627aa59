"""compattr: which combinations of a model's parts drive its output (ProxySPEX).

Pipeline, top-down: features (:mod:`compattr.features`) → masks (:func:`sample_masks`) →
queries (:mod:`compattr.query`, cached and resumable) → proxy (:class:`ProxySPEX`) →
:class:`Spectrum` → indices (:mod:`compattr.indices`), metrics (:mod:`compattr.metrics`),
plans (:mod:`compattr.optimize`). :func:`explain` runs all of it.
"""

from . import features, indices, metrics, models, optimize, plots, query, synthetic, tasks, values
from .cache import CacheCorruptError, CacheMismatchError
from .explain import Explanation, explain
from .features import (
    AttentionHeads,
    FeatureSet,
    ImagePatches,
    Sentences,
    Tokens,
    TrainingSubsets,
    Words,
    check_feature_set,
)
from .lasso import LassoBaseline
from .masks import budget, sample_masks
from .metrics import faithfulness
from .optimize import PruningPlan, ValueRangeWarning
from .proxy import PAPER_GRID, ProxySPEX
from .query import Query, run_queries
from .spectrum import EnergySplit, Spectrum

__version__ = "0.1.0"

__all__ = [
    "PAPER_GRID",
    "AttentionHeads",
    "CacheCorruptError",
    "CacheMismatchError",
    "EnergySplit",
    "Explanation",
    "FeatureSet",
    "ImagePatches",
    "LassoBaseline",
    "ProxySPEX",
    "PruningPlan",
    "Query",
    "Sentences",
    "Spectrum",
    "Tokens",
    "TrainingSubsets",
    "ValueRangeWarning",
    "Words",
    "budget",
    "check_feature_set",
    "explain",
    "faithfulness",
    "features",
    "indices",
    "metrics",
    "models",
    "optimize",
    "plots",
    "query",
    "run_queries",
    "sample_masks",
    "synthetic",
    "tasks",
    "values",
    "__version__",
]
