"""The proxy: from (mask, output) pairs to a sparse Fourier spectrum.

:class:`ProxySPEX` (:mod:`~compattr.proxy.proxyspex`) reads as the paper's four stages, each
in a module of its own: :mod:`~compattr.proxy.search` (trees by cross-validation, with the
early-stopping callbacks of :mod:`~compattr.proxy.stopping`), :mod:`~compattr.proxy.trees`
(exact extraction), :mod:`~compattr.proxy.sparsify` (top-k by cross-validation) and
:mod:`~compattr.proxy.leastsquares` (the refit); :mod:`~compattr.proxy.extension` extends the
kept terms one feature at a time where their residual points. :class:`LassoBaseline` is the marginal
baseline it is compared with. :class:`PairedShapley` (:mod:`~compattr.proxy.shapley`) estimates
Shapley values from complementary pairs of masks: a ProxySPEX prior refitted on the odd part.
"""

from .lasso import LassoBaseline
from .proxyspex import EXPLAINS_ABOVE, PAPER_GRID, ProxySPEX
from .shapley import PairedShapley

__all__ = ["EXPLAINS_ABOVE", "PAPER_GRID", "LassoBaseline", "PairedShapley", "ProxySPEX"]
