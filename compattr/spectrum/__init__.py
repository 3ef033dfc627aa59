"""The spectrum and what is read off it.

:mod:`~compattr.spectrum.spectrum`
    :class:`Spectrum`, the sparse Boolean Fourier spectrum every result is read from, and
    :class:`EnergySplit`.
:mod:`~compattr.spectrum.supports`
    Sets of features as padded integer rows, and their ±1 parities on masks.
:mod:`~compattr.spectrum.indices`
    Shapley, Banzhaf, Möbius and the interaction indices, exactly from the coefficients.
:mod:`~compattr.spectrum.metrics`
    Held-out faithfulness and the hierarchy rates of a spectrum.
:mod:`~compattr.spectrum.uncertainty`
    Bootstrap and jackknife intervals of the coefficients and of every index.
"""

from .spectrum import EnergySplit, Spectrum
from .supports import group_padded_rows, parity_matrix
from .uncertainty import (
    REFIT_GAP,
    RefitMismatchWarning,
    SpectrumBootstrap,
    SpectrumJackknife,
    bootstrap,
    jackknife,
    refit_gap,
)

__all__ = [
    "REFIT_GAP",
    "EnergySplit",
    "RefitMismatchWarning",
    "Spectrum",
    "SpectrumBootstrap",
    "SpectrumJackknife",
    "bootstrap",
    "group_padded_rows",
    "jackknife",
    "parity_matrix",
    "refit_gap",
]
