"""Plans: which features to keep or remove, optimised exactly on a sparse spectrum.

:mod:`~compattr.optimize.ilp`
    :func:`best_subset`: the kept-set that maximises (or minimises) the spectrum under the
    constraints of :mod:`~compattr.optimize.constraints`, by integer programming.
:mod:`~compattr.optimize.removal`
    :func:`removal`: the features whose removal moves the output most (paper eq. 4).
:mod:`~compattr.optimize.baselines`
    :func:`lasso_subset` and :func:`best_of_n`, the baselines plans are compared with.
:mod:`~compattr.optimize.verified`
    Plans measured on the model at counted calls: :class:`MaskOracle`,
    :func:`verified_plan` (the surrogate's candidates checked and refitted, best measured
    returned), :func:`greedy_elimination` and :func:`single_feature_ablation`.
:mod:`~compattr.optimize.plans`
    :class:`PruningPlan` (save, load, apply), :class:`ValueRangeWarning`, and
    :func:`plan_size`, the one rule for how many features a plan keeps.
"""

from .._validation import plan_size
from .baselines import best_of_n, lasso_subset
from .constraints import meets_group_minimum
from .ilp import DEFAULT_MAX_VARIABLES, best_subset
from .plans import PruningPlan, ValueRangeWarning
from .removal import Removal, removal
from .verified import (
    ROUND_TIME_LIMIT,
    BudgetExhausted,
    MaskOracle,
    PlanSearch,
    greedy_elimination,
    single_feature_ablation,
    verified_plan,
)

__all__ = [
    "DEFAULT_MAX_VARIABLES",
    "ROUND_TIME_LIMIT",
    "BudgetExhausted",
    "MaskOracle",
    "PlanSearch",
    "PruningPlan",
    "Removal",
    "ValueRangeWarning",
    "best_of_n",
    "best_subset",
    "greedy_elimination",
    "lasso_subset",
    "meets_group_minimum",
    "plan_size",
    "removal",
    "single_feature_ablation",
    "verified_plan",
]
