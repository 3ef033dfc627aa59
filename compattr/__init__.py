"""compattr: which combinations of a model's parts drive its output (ProxySPEX).

Pipeline: features → masks (:func:`sample_masks`) → model queries → proxy
(:class:`ProxySPEX`) → :class:`Spectrum` → indices, energy split and plans.
"""

from . import synthetic
from .lasso import LassoBaseline
from .masks import budget, sample_masks
from .proxy import PAPER_GRID, ProxySPEX
from .spectrum import EnergySplit, Spectrum

__version__ = "0.1.0"

__all__ = [
    "PAPER_GRID",
    "EnergySplit",
    "LassoBaseline",
    "ProxySPEX",
    "Spectrum",
    "budget",
    "sample_masks",
    "synthetic",
    "__version__",
]
