"""Where each model family keeps its transformer blocks and attention output projections.

:class:`~compattr.features.AttentionHeads` masks heads with a forward pre-hook on each
layer's attention output projection, whose input is the concatenation of the heads' outputs
``[..., n_heads * d_head]``, head-major. This module finds those projections:

1. by the model's ``config.model_type`` in :data:`REGISTRY` (extend it with
   :func:`register_architecture`);
2. failing that, by discovery: a ``ModuleList`` of ``config.num_hidden_layers`` blocks whose
   first block holds exactly one linear layer named like an attention output projection
   (its MLP site: the norm after the MLP where the block has one, else ``mlp``);
3. failing that, with an error that says how to register the model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """Paths to the blocks and to the attention output projection inside each block.

    Attributes
    ----------
    blocks : str
        Dotted path of the ``ModuleList`` of transformer blocks, matched as a suffix of the
        module names, so ``"layers"`` finds ``model.layers`` in ``LlamaForCausalLM`` and
        ``layers`` in ``LlamaModel``.
    out_proj : str
        Dotted path of the output projection inside one block.
    mlp : str
        Dotted path, inside one block, of the module whose output is the MLP's contribution
        to the residual stream (before the residual sum): ``"mlp"`` in most decoders, the
        norm after it where there is one (``"post_feedforward_layernorm"`` in Gemma 2 and 3,
        OLMo 2, ``"post_mlp_layernorm"`` in GLM-4): mean ablation and gradients read the
        contribution, not the MLP's output. A module that adds the residual itself (Bloom's
        ``mlp``) is not the contribution: name its output projection (``"mlp.dense_4h_to_h"``).
    """

    blocks: str
    out_proj: str
    mlp: str = "mlp"


_DECODER = Architecture("layers", "self_attn.o_proj")
_POST_NORM = "post_feedforward_layernorm"  # normalises the MLP's output before the residual sum
#: Names of a norm on the MLP's output before the residual sum, which discovery reads the MLP
#: after (Gemma 2/3 and OLMo 2; GLM-4; LFM's ``post_ffn_norm``).
_POST_NORMS = (_POST_NORM, "post_mlp_layernorm", "post_ffn_norm")
_POST_NORM_DECODER = Architecture("layers", "self_attn.o_proj", _POST_NORM)
_BERT = Architecture("encoder.layer", "attention.output.dense", "output.dense")

REGISTRY: dict[str, Architecture] = {
    "llama": _DECODER,
    "mistral": _DECODER,
    "mixtral": _DECODER,
    "qwen2": _DECODER,
    "qwen3": _DECODER,
    "gemma": _DECODER,
    "gemma2": _POST_NORM_DECODER,
    "phi3": _DECODER,
    "olmo": _DECODER,
    "gpt2": Architecture("h", "attn.c_proj"),
    "gpt_neox": Architecture("layers", "attention.dense"),
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "camembert": _BERT,
    "electra": _BERT,
    "distilbert": Architecture("transformer.layer", "attention.out_lin", "ffn"),
    "opt": Architecture("decoder.layers", "self_attn.out_proj", "fc2"),
    "gemma3_text": _POST_NORM_DECODER,
    "glm4": Architecture("layers", "self_attn.o_proj", "post_mlp_layernorm"),
    "falcon": Architecture("h", "self_attention.dense"),
}

_OUT_PROJ = re.compile(r"(^|\.)(self_attn|attn|attention)(\.output)?\.(o_proj|out_proj|c_proj|dense|out_lin|wo)$")


def register_architecture(model_type: str, architecture: Architecture) -> None:
    """Teach :class:`~compattr.features.AttentionHeads` a model family (``config.model_type``)."""
    REGISTRY[model_type] = architecture


def text_config(model: nn.Module):
    """The configuration of the model's language part: ``config.get_text_config()`` for
    multimodal wrappers (Gemma 3 4B+, LLaVA...), else ``config`` (None without one)."""
    config = getattr(model, "config", None)
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def language_model(model: nn.Module) -> nn.Module:
    """The module holding the language model's blocks: the decoder of a multimodal wrapper
    (whose configuration has a separate text configuration), else the model itself."""
    config = getattr(model, "config", None)
    get_decoder = getattr(model, "get_decoder", None)
    if text_config(model) is not config and callable(get_decoder):
        decoder = get_decoder()
        if isinstance(decoder, nn.Module):
            return decoder
    return model


def kv_heads(config) -> int:
    """Number of key/value heads per layer of a Hugging Face text configuration.

    ``num_key_value_heads`` (grouped-query attention), Falcon's ``num_kv_heads``, and one
    head for Falcon's ``multi_query`` without the new decoder architecture; else one per
    query head.
    """
    if getattr(config, "multi_query", False) and not getattr(config, "new_decoder_architecture", False):
        return 1
    for name in ("num_key_value_heads", "num_kv_heads"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    return int(config.num_attention_heads)


def find_blocks(model: nn.Module, architecture: Architecture) -> nn.ModuleList:
    """The ``ModuleList`` of blocks named by ``architecture.blocks``, shortest match first."""
    suffix = architecture.blocks
    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and (name == suffix or name.endswith("." + suffix))
    ]
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no ModuleList named '{suffix}' "
            f"(architecture {architecture}); check the model or register its architecture."
        )
    return min(found, key=lambda item: len(item[0]))[1]


def resolve(model: nn.Module) -> tuple[Architecture, str]:
    """The model's :class:`Architecture` and how it was found (``'registry'``/``'discovered'``).

    For a multimodal wrapper, the architecture of its language model (found by the text
    configuration's ``model_type``), whose blocks :func:`find_blocks` then finds in
    :func:`language_model`.
    """
    config = text_config(model)
    model_type = getattr(config, "model_type", None)
    if model_type in REGISTRY:
        return REGISTRY[model_type], "registry"
    discovered = _discover(language_model(model), getattr(config, "num_hidden_layers", None))
    if discovered is not None:
        return discovered, "discovered"
    raise ValueError(
        f"Unknown architecture: {type(model).__name__} (model_type={model_type!r}) is not in "
        f"the registry ({', '.join(sorted(REGISTRY))}) and no attention output projection was "
        "found by name. Register it: compattr.features.register_architecture(model_type, "
        "Architecture(blocks='<path of the ModuleList of blocks>', out_proj='<path of the "
        "projection whose input is the concatenated head outputs>', mlp='<path, in a block, of "
        "the module whose output is the MLP's contribution, without the residual>'))."
    )


def _discover(model: nn.Module, n_layers: int | None) -> Architecture | None:
    """The one ``ModuleList`` of ``n_layers`` blocks (any length when None) whose first block
    holds exactly one attention output projection (:data:`_OUT_PROJ`); None where there is
    none, ``ValueError`` where several stacks qualify (an encoder–decoder's encoder and
    decoder, a multimodal model's vision and text towers): which one to mask is the user's
    choice, made by registering it."""
    found = []
    for name, blocks in model.named_modules():
        if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
            continue
        if n_layers is not None and len(blocks) != n_layers:
            continue
        projections = [
            sub for sub, module in blocks[0].named_modules() if _OUT_PROJ.search(sub) and hasattr(module, "weight")
        ]
        if len(projections) == 1:
            norms = [norm for norm in _POST_NORMS if isinstance(getattr(blocks[0], norm, None), nn.Module)]
            found.append(Architecture(name, projections[0], norms[0] if norms else "mlp"))
    if len(found) > 1:
        stacks = ", ".join(f"'{a.blocks}' (out_proj '{a.out_proj}')" for a in found)
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        raise ValueError(
            f"{type(model).__name__} has {len(found)} stacks of attention blocks: {stacks}; "
            "which heads to mask is ambiguous. Register the stack you mean: "
            f"compattr.features.register_architecture({model_type!r}, Architecture(blocks=..., out_proj=...))."
        )
    return found[0] if found else None


def is_lens(model: nn.Module) -> bool:
    """Whether ``model`` is a TransformerLens model (it has ``blocks.0.attn.hook_z``)."""
    hooks = getattr(model, "hook_dict", None)
    return isinstance(hooks, dict) and "blocks.0.attn.hook_z" in hooks


def check_layers(layers: Sequence[int] | None, n_layers: int) -> list[int]:
    """``layers`` as sorted distinct indices in ``[0, n_layers)`` (None: all), or a ``ValueError``."""
    if layers is None:
        return list(range(n_layers))
    given: list[Any] = list(layers) if isinstance(layers, (list, tuple, range, np.ndarray)) else [layers]
    wrong = [l for l in given if isinstance(l, (bool, np.bool_)) or not isinstance(l, (int, np.integer))]
    if wrong:
        raise ValueError(f"layers must be integers (layer indices), got {wrong!r}.")
    layers = [int(l) for l in given]
    if not layers:
        raise ValueError("layers is empty; pass None for all layers.")
    bad = [l for l in layers if not 0 <= l < n_layers]
    if bad:
        raise ValueError(f"layer(s) {bad} out of range: the model has layers 0..{n_layers - 1}.")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers must be distinct, got {layers}.")
    return sorted(layers)
