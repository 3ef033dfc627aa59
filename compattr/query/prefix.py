"""Token masks after a fixed prompt prefix: compute the prefix's key/value cache once.

Causal attention makes the keys and values of a prefix independent of the tokens after it, so
when every masked row begins with the same unmasked prefix, :class:`PrefixCache` runs the
prefix once and only the later tokens per row (exact). :class:`~compattr.query.MaskedModel` uses it
for text features with a ``prefix`` on Hugging Face causal LMs.
"""

from __future__ import annotations

import torch

from ..features.base import forward_takes, input_device


class PrefixCache(torch.nn.Module):
    """A Hugging Face causal LM that starts every row from the key/value cache of one prefix.

    Rows must begin with ``prefix``; only their later tokens are computed. Exact: causal
    attention makes the prefix's keys and values independent of what follows. Logits cover the
    last ``logits_to_keep`` positions, as for the wrapped model (which must be > 0 and at most
    the number of tokens after the prefix). Other per-token inputs (``token_type_ids``...) are
    split at the prefix like ``input_ids``; the prefix's cache is computed on first use with
    the per-token inputs the caller passes, so it matches the full forward exactly. A model
    whose cache keeps only part of the prefix (sliding-window attention over a prefix at least
    as long as the window) runs every row whole instead.
    """

    def __init__(self, model: torch.nn.Module, prefix: torch.Tensor):
        super().__init__()
        self.model = model
        self.prefix = prefix
        # per-token prefix inputs (name, bytes) -> per layer (keys, values)
        # (None: a layer keeps only part of the prefix; those rows run whole)
        self._caches: dict[tuple[tuple[str, bytes], ...], list[tuple[torch.Tensor, torch.Tensor]] | None] = {}

    @staticmethod
    def supports(model: torch.nn.Module) -> bool:
        """Whether ``model`` takes a key/value cache and ``logits_to_keep`` (HF causal LMs).

        The cache argument is ``cache`` from transformers 5.24 on, ``past_key_values`` before.
        """
        return _cache_argument(type(model)) is not None and forward_takes(type(model), "logits_to_keep")

    def forward(self, input_ids: torch.Tensor, attention_mask=None, logits_to_keep: int = 0, **kwargs):
        from transformers import DynamicCache

        B, S = input_ids.shape
        P = self.prefix.shape[1]
        if not 0 < logits_to_keep <= S - P:
            raise ValueError(
                f"PrefixCache returns logits of the {S - P} tokens after the prefix only; "
                f"got logits_to_keep={logits_to_keep}."
            )
        if not torch.equal(input_ids[:, :P], self.prefix.to(input_ids.device).expand(B, -1)):
            raise ValueError("every row must begin with the cached prefix; was a prefix token masked?")
        kwargs.pop("use_cache", None)
        per_token = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor) and v.shape[:2] == (B, S)}
        for name, value in per_token.items():
            if not torch.equal(value[:, :P], value[:1, :P].expand_as(value[:, :P])):
                raise ValueError(f"every row must share the prefix's {name}.")
        layers = self._prefix_layers({k: v[:1, :P] for k, v in per_token.items()})
        if layers is None:  # a layer keeps only part of the prefix (a sliding window): no cache
            return self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                use_cache=False,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )
        # The attention mask keeps the prefix's keys, as Hugging Face expects with a cache; a
        # 4D (B, 1, queries, keys) mask loses the prefix's queries.
        if attention_mask is not None and attention_mask.ndim == 4:
            attention_mask = attention_mask[:, :, P:]
        cache = DynamicCache([(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in layers])
        kwargs.update({k: v[:, P:] for k, v in per_token.items()})
        argument = _cache_argument(type(self.model))
        if argument is None:
            raise TypeError(f"{type(self.model).__name__} takes no key/value cache (see PrefixCache.supports).")
        kwargs[argument] = cache
        return self.model(
            input_ids=input_ids[:, P:],
            attention_mask=attention_mask,
            use_cache=True,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def clear(self) -> None:
        """Forget the prefix's key/value caches (the model's weights changed)."""
        self._caches.clear()

    def _prefix_layers(self, prefix_inputs: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """Per layer (keys, values) of the prefix, run once per distinct set of per-token
        prefix inputs (names and values); None where a layer's cache keeps fewer positions
        than the prefix has (a sliding window shorter than the prefix keeps only its last
        tokens, so the rows' later tokens would read a shifted cache): those rows run whole."""
        key = tuple((name, value.cpu().numpy().tobytes()) for name, value in sorted(prefix_inputs.items()))
        if key not in self._caches:
            prefix = self.prefix.to(input_device(self.model))
            with torch.inference_mode():
                output = self.model(input_ids=prefix, use_cache=True, **prefix_inputs)
            cache = output["cache"] if "cache" in output else output["past_key_values"]
            layers = [(keys, values) for keys, values, *_ in cache]
            whole = all(keys.shape[-2] == prefix.shape[1] for keys, _ in layers)
            self._caches[key] = layers if whole else None
        return self._caches[key]


def _cache_argument(model_class: type) -> str | None:
    """Name of the key/value cache argument of ``model_class.forward``, or None without one."""
    for name in ("cache", "past_key_values"):
        if forward_takes(model_class, name):
            return name
    return None
