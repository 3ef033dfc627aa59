"""Attention heads as features: mask any subset of heads, a different subset per batch row.

Each selected layer gets a forward pre-hook on its attention output projection (Hugging Face
models, located by :mod:`compattr.features.architectures`) or a forward hook on
``blocks.{l}.attn.hook_z`` (TransformerLens). The hooked tensor ``[batch, ..., H * D]`` (or
``[batch, ..., H, D]``) is viewed as ``[batch, ..., H, D]`` and multiplied by a mask of shape
``[batch, H]`` on the tensor's own device, so one forward pass evaluates a whole batch of
masks. The hook never reads the module's weights (they may sit on ``meta`` under accelerate
offload).

Ablations
---------
``"zero"``
    Masked heads output zero; with ``rescale=True`` the kept heads of layer ``l`` are scaled by
    ``H / k_l`` (``k_l`` kept heads), keeping the layer's output scale.
``"mean"``
    Masked heads output their mean over the tokens of ``reference`` inputs.
``"patch"``
    Masked heads output what they output on a paired ``corrupted`` input (activation
    patching, e.g. IOI's name-swapped prompt): one corrupted example per clean example, same
    token length, its head outputs recorded once and reused for every mask.

Usage::

    heads = compattr.AttentionHeads(model, layers=None, rescale=True)
    with heads.masked(M):        # M: (n,) or (batch, n) bool, True = head kept
        out = model(input_ids)   # row b uses M[b]

To evaluate masks, bind the heads to a value function and inputs with
:class:`compattr.query.MaskedModel` (what :func:`compattr.explain` does); it also uses
:meth:`AttentionHeads.layer_replay` to run the layers before the first masked layer once per
example instead of once per mask.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from .architectures import check_layers, find_blocks, is_lens, kv_heads, language_model, resolve, text_config
from .base import Inputs, attention_mask_of, digest, mask_rows
from .components import Components
from .patching import patched_rows, record_activations, token_mean
from .replay import LayerReplay, replay_before

_ABLATIONS = ("zero", "mean", "patch")


class AttentionHeads:
    """The attention heads of an HF or TransformerLens model, as ``n = layers x heads`` features.

    Parameters
    ----------
    model : torch.nn.Module
        A Hugging Face transformer (Llama, Mistral, Qwen2, Gemma, GPT-2, GPT-NeoX,
        BERT/RoBERTa, DistilBERT, OPT, or anything :mod:`~compattr.features.architectures`
        discovers) or a TransformerLens model (``TransformerBridge`` or ``HookedTransformer``).
    layers : sequence of int, optional
        Layers whose heads are features; default all. They are taken in increasing order,
        whatever the order given: feature ``i`` is head ``i % H`` of layer
        ``self.layers[i // H]`` (layer-major).
    rescale : bool
        With ``ablation="zero"``, scale the kept heads of each layer by ``H / k``.
    ablation : {"zero", "mean", "patch"}
        What a masked head outputs.
    reference : tensor or mapping of tensors, optional
        Inputs whose token-averaged head outputs replace masked heads; required by
        ``ablation="mean"``.
    corrupted : tensor or mapping of tensors, optional
        With ``ablation="patch"``: one corrupted example per clean example the model will be
        run on, in the same order and with the same token positions; a masked head of row
        ``b`` outputs its output on the corrupted twin of row ``b``'s example.

    Attributes
    ----------
    n : int
        ``len(layers) * n_heads``.
    names : list of str
        ``'L{layer}.H{head}'``.
    groups : (n,) int array
        Layer of each head.
    kv_groups : (n,) int array
        Global id of the key/value head each query head reads (grouped-query attention):
        ``layer * n_kv_heads + head // (n_heads // n_kv_heads)``.
    layers : list of int
        The layers, in increasing order.
    n_heads, n_kv_heads : int
    inputs : None
        Heads own no inputs; pass them to :func:`compattr.explain` or
        :class:`compattr.query.MaskedModel`.
    """

    inputs = None

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[int] | None = None,
        rescale: bool = True,
        ablation: str = "zero",
        reference: Inputs | None = None,
        corrupted: Inputs | None = None,
    ):
        if ablation not in _ABLATIONS:
            raise ValueError(f"ablation must be one of {_ABLATIONS}, got {ablation!r}.")
        if ablation != "zero" and rescale:
            raise ValueError("rescale applies to ablation='zero' only; pass rescale=False.")
        if ablation == "mean" and reference is None:
            raise ValueError("ablation='mean' needs reference inputs to average head outputs over.")
        if (ablation == "patch") != (corrupted is not None):
            raise ValueError("ablation='patch' needs corrupted= inputs (and only it takes them).")
        self.model = model
        self.rescale = bool(rescale)
        self.ablation = ablation
        self._lens = is_lens(model)
        self._blocks: nn.ModuleList | None
        self._width: int | None
        if self._lens:
            cfg: Any = model.cfg  # TransformerLens' HookedTransformerConfig
            n_layers, self.n_heads = int(cfg.n_layers), int(cfg.n_heads)
            self.n_kv_heads = int(getattr(cfg, "n_key_value_heads", None) or self.n_heads)
            self._site_name = "hook_z"
            self._blocks = None
            # HookedTransformer's hook_z is [batch, pos, head, d_head]; TransformerBridge hands
            # it flattened to [batch, pos, head * d_head].
            self._split = _is_hooked_transformer(model)
            self._width = int(cfg.d_head) if self._split else int(cfg.n_heads) * int(cfg.d_head)
            self._warned_folded = False
            self._warn_if_value_biases_folded(stacklevel=3)
        else:
            config = text_config(model)
            if getattr(config, "num_attention_heads", None) is None:
                raise ValueError(
                    f"{type(model).__name__} has no config.num_attention_heads (nor a text "
                    "config with one); AttentionHeads needs a Hugging Face or TransformerLens "
                    "model. For a multimodal wrapper, pass its language model."
                )
            architecture, _ = resolve(model)
            self._blocks = find_blocks(language_model(model), architecture)
            n_layers, self.n_heads = len(self._blocks), int(config.num_attention_heads)
            self.n_kv_heads = kv_heads(config)
            self._site_name = architecture.out_proj
            # A Hugging Face output projection always takes the heads' outputs concatenated.
            self._split = False
            self._width = None
        self.layers = check_layers(layers, n_layers)
        self._sites = [self._site(layer) for layer in self.layers]
        if self._width is None:
            self._width = _input_width(self._sites[0])
        H, G = self.n_heads, self.n_kv_heads
        if H % G:
            raise ValueError(f"{H} query heads do not split into {G} key/value groups.")
        head = np.tile(np.arange(H), len(self.layers))
        layer = np.repeat(self.layers, H)
        self.n = len(self.layers) * H
        self.names = [f"L{l}.H{h}" for l, h in zip(layer, head)]
        self.groups = layer
        self.kv_groups = layer * G + head // (H // G)
        self._means = self._head_means(reference) if ablation == "mean" and reference is not None else None
        self._patches = self._head_outputs(corrupted) if corrupted is not None else None
        self._factors: torch.Tensor | None = None
        self._rows: torch.Tensor | None = None

    def __add__(self, other: Any) -> Components:
        """These features and ``other``'s (e.g. MLP blocks) as one feature vector."""
        return Components(self, other)

    def __repr__(self) -> str:
        return (
            f"AttentionHeads({type(self.model).__name__}, layers={_span(self.layers)}, "
            f"n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, rescale={self.rescale}, "
            f"ablation={self.ablation!r})"
        )

    def fingerprint(self) -> str:
        """Identifies the masking (layers, heads, hook site, rescaling, ablation means or patches)."""
        means = "none" if self._means is None else digest(self._means)
        patches = "" if self._patches is None else f" patches={digest(self._patches)}"
        return f"{self!r} site={self._site_name} means={means}{patches}"

    # ------------------------------------------------------------------ masking
    @contextmanager
    def masked(self, masks, examples=None) -> Iterator[AttentionHeads]:
        """Mask heads while the block runs; hooks are removed on exit, also on exceptions.

        Parameters
        ----------
        masks : (n,) or (B, n) bool array or tensor
            True = head kept. With ``B`` rows, the model must be run on a batch of ``B``
            examples and row ``b`` uses ``masks[b]``; one row applies to every example.
        examples : (B,) int array or tensor, optional
            With ``ablation="patch"``: the example (index into ``corrupted``) of each batch
            row; default row ``b`` is example ``b``.
        """
        if self._factors is not None:
            raise RuntimeError("heads are already masked; masked() contexts do not nest.")
        if self._lens:  # its weights may have been processed since these features were built
            self._warn_if_value_biases_folded(stacklevel=4)
        self._rows = None if examples is None else torch.as_tensor(examples, dtype=torch.long)
        self._factors = self._mask_factors(masks)
        handles = []
        try:
            for pos, site in enumerate(self._sites):
                if self._lens:
                    handles.append(site.register_forward_hook(partial(self._output_hook, pos)))
                else:
                    handles.append(site.register_forward_pre_hook(partial(self._input_hook, pos)))
            yield self
        finally:
            for handle in handles:
                handle.remove()
            self._factors = None
            self._rows = None

    @contextmanager
    def masking(self, masks: torch.Tensor, inputs: Inputs, examples: torch.Tensor | None = None) -> Iterator[Inputs]:
        """:class:`~compattr.features.base.Masker` protocol: ``masked(masks, examples)``, inputs
        unchanged (``examples``: each row's example, for patching)."""
        with self.masked(masks, examples):
            yield inputs

    def layer_replay(self) -> LayerReplay | None:
        """Replay of the blocks before the first masked layer, or None if there are none."""
        blocks: Any = self.model.blocks if self._lens else self._blocks  # TransformerLens' or found
        return replay_before(blocks, min(self.layers), None if self._lens else text_config(self.model))

    # ------------------------------------------------------------------ internals
    def _warn_if_value_biases_folded(self, stacklevel: int) -> None:
        """Warn (once) where zero ablation of a TransformerLens model cannot remove a head:
        its value biases folded into the output biases (:func:`_value_biases_folded`)."""
        if self.ablation != "zero" or self._warned_folded or not _value_biases_folded(self.model):
            return
        self._warned_folded = True
        warnings.warn(
            "this TransformerLens model's value biases look folded into its attention "
            "output biases (every b_V is 0, some b_O is not: weight processing with "
            "fold_value_biases=True, HookedTransformer.from_pretrained's default): "
            "zeroing a head's z then leaves its b_V·W_O in b_O, so a masked head is not "
            "removed. Load it with fold_value_biases=False, or use ablation='mean' or "
            "'patch', which are exact either way.",
            UserWarning,
            stacklevel=stacklevel,
        )

    def _site(self, layer: int) -> nn.Module:
        if self._lens:
            hooks: Any = self.model.hook_dict  # TransformerLens: hook name -> HookPoint
            return hooks[f"blocks.{layer}.attn.hook_z"]
        assert self._blocks is not None  # found for every Hugging Face model
        return self._blocks[layer].get_submodule(self._site_name)

    def _mask_factors(self, masks) -> torch.Tensor:
        """(B, L, H) multipliers on the masks' device: keep, times ``H / k_l`` if rescaling."""
        M = mask_rows(masks, self.n, "head masks")
        keep = M.reshape(M.shape[0], len(self.layers), self.n_heads).to(torch.float32)
        if self.rescale:
            kept = keep.sum(-1, keepdim=True)
            keep = keep * (self.n_heads / kept.clamp(min=1))
        return keep

    def _heads_view(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as ``[B, ..., H, D]``, by the hook site's layout (never by comparing sizes)."""
        width = x.shape[-1]
        if (self._width is not None and width != self._width) or (self._split and x.shape[-2] != self.n_heads):
            layout = "[..., heads, d_head]" if self._split else "[..., heads * d_head]"
            raise RuntimeError(
                f"the hooked tensor at {self._site_name} has shape {tuple(x.shape)}, not the "
                f"{layout} layout with {self.n_heads} heads and width {self._width} this site "
                "was registered with; the model's attention changed layout."
            )
        return x if self._split else x.unflatten(-1, (self.n_heads, -1))

    def _apply(self, pos: int, x: torch.Tensor) -> torch.Tensor:
        """Mask the heads of layer ``self.layers[pos]`` in the hooked tensor ``x``."""
        assert self._factors is not None  # the hooks run inside masked() only
        factor = self._factors[:, pos]
        if factor.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"the head masks have {factor.shape[0]} rows but the model runs a batch of "
                f"{x.shape[0]}; pass one mask row per example (or a single row for all)."
            )
        z = self._heads_view(x)
        factor = factor.to(device=z.device, dtype=z.dtype)
        factor = factor.view(factor.shape[0], *([1] * (z.ndim - 3)), self.n_heads, 1)
        # z·f + alt·(1 − f), not alt + (z − alt)·f: a kept output (f = 1) is then exactly its
        # own, which the latter rounds away from it in bfloat16
        if self._patches is not None:
            alt = patched_rows(self._patches[pos], self._rows, z, "head outputs")
            z = z * factor + alt * (1 - factor)
        elif self._means is not None:
            mu = self._means[pos].to(device=z.device, dtype=z.dtype)
            z = z * factor + mu * (1 - factor)
        else:
            z = z * factor
        return z if self._split else z.flatten(-2)

    def _input_hook(self, pos: int, module: nn.Module, args: tuple) -> tuple:
        return (self._apply(pos, args[0]), *args[1:])

    def _output_hook(self, pos: int, module: nn.Module, args: tuple, output: torch.Tensor):
        return self._apply(pos, output)

    def _head_means(self, reference: Inputs) -> torch.Tensor:
        """(L, H, D) token-averaged head outputs of the model on ``reference``."""
        weights = attention_mask_of(reference)
        read = lambda x: token_mean(self._heads_view(x), weights, tail=2).cpu()
        return torch.stack(record_activations(self.model, self._sites, reference, read, pre=not self._lens))

    def _head_outputs(self, inputs: Inputs) -> list[torch.Tensor]:
        """Per selected layer, the heads' outputs ``[E, ..., H, D]`` of the unmasked model on
        ``inputs`` (one forward pass)."""
        read = lambda x: self._heads_view(x).clone()
        return record_activations(self.model, self._sites, inputs, read, pre=not self._lens)


def _is_hooked_transformer(model: nn.Module) -> bool:
    """A TransformerLens ``HookedTransformer`` (``hook_z`` split by head), not a bridge."""
    return any(
        cls.__name__ == "HookedTransformer" and cls.__module__.startswith("transformer_lens")
        for cls in type(model).__mro__
    )


def _value_biases_folded(model: nn.Module) -> bool:
    """Whether a TransformerLens model's value biases look folded into its output biases:
    every block's ``attn.b_V`` is 0 while some ``attn.b_O`` is not (a model of either kind
    without biases, or with its value biases in place, is not)."""
    attentions = [getattr(block, "attn", None) for block in getattr(model, "blocks", [])]
    values = [getattr(attn, "b_V", None) for attn in attentions]
    outputs = [getattr(attn, "b_O", None) for attn in attentions]
    if not attentions or any(not isinstance(b, torch.Tensor) for b in values + outputs):
        return False
    with torch.no_grad():
        return not any(bool(b.any()) for b in values if b is not None) and any(
            bool(b.any()) for b in outputs if b is not None
        )


def _input_width(site: nn.Module) -> int | None:
    """Input width of an output projection (``nn.Linear`` or GPT-2's ``Conv1D``), read from
    its attributes, never its weight; None when the module does not say."""
    for name in ("in_features", "nx"):
        width = getattr(site, name, None)
        if isinstance(width, int):
            return width
    return None


def _span(layers: list[int]) -> str:
    if layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return str(layers)
