"""Features to attribute to: attention heads, MLP blocks, text units, image patches, training examples.

See :mod:`compattr.features.base` for the two protocols (:class:`SetFunction`, :class:`Masker`)
and :func:`check_set_function`, the conformance check for set functions you write yourself.
``FeatureSet`` and ``check_feature_set`` are their earlier names, kept as aliases.
"""

from .architectures import Architecture, register_architecture
from .base import FeatureSet, Masker, SetFunction, check_feature_set, check_set_function
from .components import Components, Grouped, attention_layers, kv_groups
from .data import TrainingSubsets
from .heads import AttentionHeads
from .images import ImagePatches
from .mlps import MLPBlocks
from .text import Sentences, TextSpans, Tokens, Words

__all__ = [
    "Architecture",
    "AttentionHeads",
    "Components",
    "FeatureSet",
    "Grouped",
    "ImagePatches",
    "MLPBlocks",
    "Masker",
    "Sentences",
    "SetFunction",
    "TextSpans",
    "Tokens",
    "TrainingSubsets",
    "Words",
    "attention_layers",
    "check_feature_set",
    "check_set_function",
    "kv_groups",
    "register_architecture",
]
