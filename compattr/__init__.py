"""compattr: which combinations of a model's parts drive its output (ProxySPEX)."""

from .masks import budget, sample_masks
from .spectrum import EnergySplit, Spectrum
from . import synthetic

__version__ = "0.1.0"

__all__ = ["EnergySplit", "Spectrum", "budget", "sample_masks", "synthetic", "__version__"]
