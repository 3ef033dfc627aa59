"""Features to attribute to: attention heads, text units, image patches, training examples.

See :mod:`compattr.features.base` for the two protocols (:class:`FeatureSet`, :class:`Masker`)
and :func:`check_feature_set`, the conformance check for feature sets you write yourself.
"""

from .architectures import Architecture, register_architecture
from .base import FeatureSet, Masker, check_feature_set
from .data import TrainingSubsets
from .heads import AttentionHeads
from .images import ImagePatches
from .text import Sentences, TextSpans, Tokens, Words

__all__ = [
    "Architecture",
    "AttentionHeads",
    "FeatureSet",
    "ImagePatches",
    "Masker",
    "Sentences",
    "TextSpans",
    "Tokens",
    "TrainingSubsets",
    "Words",
    "check_feature_set",
    "register_architecture",
]
