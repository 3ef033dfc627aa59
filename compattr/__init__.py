"""compattr: which combinations of a model's parts drive its output (ProxySPEX).

The pipeline, one subpackage per stage: features (:mod:`compattr.features`) → masks and
queries (:mod:`compattr.query`: :func:`sample_masks`, :class:`MaskedModel`, :func:`run_queries`,
cached and resumable) → proxy (:mod:`compattr.proxy`: :class:`ProxySPEX`) → spectrum
(:mod:`compattr.spectrum`: :class:`Spectrum`, its indices and metrics) → plans
(:mod:`compattr.optimize`). :func:`explain` runs all of it, and :func:`explain_shapley` the
Shapley values alone, from complementary pairs of masks, with their intervals;
:mod:`compattr.apps` holds the question sets, models, plots, reports and the ``compattr``
command built on it.

Features are :class:`SetFunction` objects (``n``, ``names``, ``groups``, ``evaluate(masks)``)
or :class:`~compattr.features.Masker` objects that a :class:`MaskedModel` turns into one.
``FeatureSet``, ``check_feature_set`` and ``Query`` are the earlier names of
:class:`SetFunction`, :func:`check_set_function` and :class:`MaskedModel` (the same objects).
"""

import sys

from . import apps, features, optimize, proxy, query, spectrum, synthetic
from .apps import cli, models, plots, tasks
from .explain import Explanation, explain, held_out_masks
from .explain_shapley import ShapleyExplanation, explain_shapley
from .features import (
    AttentionHeads,
    Components,
    FeatureSet,
    ImagePatches,
    MLPBlocks,
    Sentences,
    SetFunction,
    Tokens,
    TrainingSubsets,
    Words,
    check_feature_set,
    check_set_function,
)
from .optimize import PruningPlan, ValueRangeWarning
from .proxy import PAPER_GRID, LassoBaseline, PairedShapley, ProxySPEX, lasso
from .query import (
    CacheCorruptError,
    CacheMismatchError,
    MaskedModel,
    Query,
    budget,
    cache,
    masks,
    paired_masks,
    run_queries,
    sample_masks,
    values,
)
from .spectrum import EnergySplit, Spectrum, indices, metrics
from .spectrum.metrics import faithfulness, faithfulness_interval

__version__ = "0.1.0"  # the one version number: pyproject.toml reads it from here

# The modules that lived at the top level before the subpackages keep their old paths:
# ``import compattr.values`` and ``from compattr.tasks import QuestionSet`` give the moved module.
for _module in (values, masks, cache, lasso, indices, metrics, tasks, models, cli, plots):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
del _module

__all__ = [
    "PAPER_GRID",
    "AttentionHeads",
    "CacheCorruptError",
    "CacheMismatchError",
    "Components",
    "EnergySplit",
    "Explanation",
    "FeatureSet",
    "ImagePatches",
    "LassoBaseline",
    "MLPBlocks",
    "MaskedModel",
    "PairedShapley",
    "ProxySPEX",
    "PruningPlan",
    "Query",
    "Sentences",
    "SetFunction",
    "ShapleyExplanation",
    "Spectrum",
    "Tokens",
    "TrainingSubsets",
    "ValueRangeWarning",
    "Words",
    "__version__",
    "apps",
    "budget",
    "check_feature_set",
    "check_set_function",
    "explain",
    "explain_shapley",
    "faithfulness",
    "faithfulness_interval",
    "features",
    "held_out_masks",
    "indices",
    "metrics",
    "models",
    "optimize",
    "paired_masks",
    "plots",
    "proxy",
    "query",
    "run_queries",
    "sample_masks",
    "spectrum",
    "synthetic",
    "tasks",
    "values",
]
