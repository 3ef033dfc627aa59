"""The query engine: evaluate a feature set on many masks, fast, resumably, on any device.

Two pieces:

:class:`Query`
    Binds a model, a :class:`~compattr.features.base.Masker` (heads, words, patches), a
    :class:`~compattr.values.Value` and inputs into a
    :class:`~compattr.features.base.FeatureSet`. Its ``evaluate(masks)`` lays masks x examples
    out as rows of one batch (row ``r`` = mask ``r // e``, example ``r % e``), so one forward
    pass evaluates many masks; picks the batch size (growing it while throughput rises, with
    ``batch_size="auto"``) and halves it on out-of-memory; runs under
    ``torch.inference_mode`` with masks on the inputs' device; and, for attention heads, runs
    the layers before the first masked layer once per example batch and replays only the later
    layers per mask batch, and for token masks after a fixed prompt prefix, computes the
    prefix's key/value cache once and runs only the later tokens (both exact).
:func:`run_queries`
    Evaluates any feature set on a mask matrix in chunks with a progress bar, optionally
    through a :class:`~compattr.cache.QueryCache` folder: every chunk's outputs are stored as
    soon as they are computed, a killed run resumes where it stopped without re-querying, and a
    cache made for another model, feature set, value function or inputs is refused. Launched
    with ``accelerate launch`` (or any launcher that sets ``WORLD_SIZE``), the processes split
    the masks, share the cache and all return the gathered outputs.

This is the call path of ``compattr.explain``::

    query = Query(model, features=heads, value=ClassLogit(), inputs=batch)
    X = compattr.sample_masks(query.n, m, seed=seed)
    y = run_queries(query, X, cache_dir=cache_dir)      # (m,) outputs
    est = compattr.ProxySPEX(seed=seed).fit(X, y)
"""

from __future__ import annotations

import hashlib
import os
import time
from contextlib import nullcontext
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from ._validation import as_masks, as_outputs
from .cache import QueryCache
from .features.base import FeatureSet, Inputs, Masker, digest, forward_takes, map_inputs, n_examples
from .values import Value

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class Query:
    """A model, a masker, a value function and inputs, evaluated as a :class:`FeatureSet`.

    Parameters
    ----------
    model : torch.nn.Module
        The model; put it in eval mode.
    features : Masker
        What to mask: :class:`~compattr.features.AttentionHeads` (of this model),
        :class:`~compattr.features.Words`, :class:`~compattr.features.ImagePatches`, ...
    value : Value
        What to measure, e.g. :class:`~compattr.values.ClassLogit`.
    inputs : tensor or mapping of tensors, optional
        ``E`` examples on the first axis; default ``features.inputs`` (text, images).
        Moved to the device of the model's input embeddings.
    batch_size : int or "auto", optional
        Rows (mask x example pairs) per forward pass, halved on out-of-memory. ``"auto"``
        starts at 256 and doubles while the masks evaluated per second rise by at least 10 %
        (up to 8,192 rows), keeping the best size; it is the default on an accelerator. The
        default on CPU is 64, where larger batches were measured to gain nothing.
    replay : bool
        Reuse what no mask changes: the output of the unmasked leading layers (attention heads
        not in layer 0), or the key/value cache of a fixed prompt prefix (text features with a
        ``prefix``, on Hugging Face causal LMs).

    Attributes
    ----------
    n, names, groups
        Those of ``features``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        features: Masker,
        value: Value,
        inputs: Inputs | None = None,
        *,
        batch_size: int | str | None = None,
        replay: bool = True,
    ):
        if getattr(features, "model", model) is not model:
            raise ValueError("features were built for another model than the one given to Query.")
        if inputs is None:
            inputs = getattr(features, "inputs", None)
            if inputs is None:
                raise ValueError(f"{type(features).__name__} owns no inputs; pass inputs=.")
        if batch_size is not None and batch_size != "auto" and not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive int or 'auto', got {batch_size!r}.")
        self.model = model
        self.features = features
        self.value = value
        self.n, self.names, self.groups = features.n, features.names, features.groups
        self.device = input_device(model)
        self.inputs = map_inputs(lambda t: t.to(self.device), inputs)
        if batch_size is None:
            batch_size = 64 if self.device.type == "cpu" else "auto"
        self._sizer = _BatchSizer(256) if batch_size == "auto" else None
        self.batch_size = self._sizer.size if self._sizer else int(batch_size)
        layer_replay = getattr(features, "layer_replay", None)
        self._layer_replay = layer_replay() if (replay and layer_replay is not None) else None
        self._prefix_cache = None
        fixed = getattr(features, "fixed_prefix", 0)
        if replay and fixed > 0 and PrefixCache.supports(model):
            ids = self.inputs["input_ids"] if isinstance(self.inputs, Mapping) else self.inputs
            self._prefix_cache = PrefixCache(model, ids[:1, :fixed])
        self._prepared: tuple[Inputs, Any] | None = None
        self._captured: dict[tuple[int, int], Any] = {}  # layer-replay outputs per example slice

    def fingerprint(self) -> dict[str, str]:
        """What the outputs depend on: model weights, features, value function and inputs."""
        return {
            "model": model_fingerprint(self.model),
            "features": self.features.fingerprint(),
            "value": self.value.fingerprint(),
            "inputs": f"inputs#{digest(self.inputs)}",
        }

    def evaluate(self, masks) -> np.ndarray:
        """Outputs ``(m,)`` float64 of masks ``(m, n)`` bool (True = feature kept)."""
        X = as_masks(masks, self.n)
        M = torch.from_numpy(X).to(self.device)
        out = np.empty(len(X))
        with torch.inference_mode():
            inputs, targets = self._prepare()
            E = n_examples(inputs)
            i = 0
            while i < len(X):
                e = min(E, self.batch_size)
                b = max(1, self.batch_size // e)
                start = time.perf_counter()
                try:
                    out[i : i + b] = self._evaluate_batch(M[i : i + b], inputs, targets, e)
                except Exception as error:
                    if not _is_oom(error) or self.batch_size == 1:
                        raise
                    self._shrink()
                    continue
                if self._sizer is not None and i + b <= len(X):  # full batches only
                    self._sizer.observe(b / (time.perf_counter() - start))
                    self.batch_size = self._sizer.size
                i += b
        return out

    def _prepare(self) -> tuple[Inputs, Any]:
        if self._prepared is None:
            self._prepared = self.value.prepare(self.model, self.inputs, self.batch_size)
        return self._prepared

    def _evaluate_batch(self, masks: torch.Tensor, inputs: Inputs, targets: Any, e: int) -> np.ndarray:
        """Outputs of ``b`` masks, their examples taken ``e`` at a time."""
        b, E = len(masks), n_examples(inputs)
        model = self.model if self._prefix_cache is None else self._prefix_cache
        tile = lambda v: v.repeat(b, *([1] * (v.ndim - 1)))  # row r: example r % k
        scores = []
        for j in range(0, E, e):
            k = min(j + e, E) - j
            x, t = (map_inputs(lambda v: v[j : j + k], z) for z in (inputs, targets))
            x_rows, t_rows = map_inputs(tile, x), map_inputs(tile, t)
            with self._replaying(j, x, t), self.features.masking(masks.repeat_interleave(k, 0), x_rows) as xm:
                scores.append(self.value.score(model, xm, t_rows).view(b, k))
        return self.value.reduce(torch.cat(scores, 1)).double().cpu().numpy()

    def _replaying(self, start: int, x: Inputs, t: Any):
        if self._layer_replay is None:
            return nullcontext()
        key = (start, n_examples(x))
        if key not in self._captured:
            self._captured[key] = self._layer_replay.capture(lambda: self.value.score(self.model, x, t))
        return self._layer_replay.replaying(self._captured[key])

    def _shrink(self) -> None:
        self.batch_size //= 2
        if self._sizer is not None:
            self._sizer.stop(self.batch_size)
        self._captured.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class _BatchSizer:
    """``batch_size="auto"``: double the rows per forward pass while throughput rises.

    Each full batch reports its masks per second. The first report is a warm-up and is
    ignored; then a size is kept and doubled (up to ``limit`` rows) when its throughput beats
    the best so far by ``gain``, and growth stops at the first size that does not, going back
    to the best one. Out-of-memory also stops growth (see :meth:`stop`).
    """

    def __init__(self, size: int, limit: int = 8192, gain: float = 1.1):
        self.size, self.limit, self.gain = size, limit, gain
        self.growing, self._warm = True, False
        self._best: tuple[int, float] | None = None  # (size, masks per second)

    def observe(self, rate: float) -> None:
        if not self.growing:
            return
        if not self._warm:
            self._warm = True
            return
        if self._best is not None and rate < self.gain * self._best[1]:
            self.stop(self._best[0] if rate < self._best[1] else self.size)
            return
        self._best = (self.size, rate)
        if 2 * self.size > self.limit:
            self.growing = False
        else:
            self.size *= 2

    def stop(self, size: int) -> None:
        """Stop growing and use ``size`` rows from now on."""
        self.size, self.growing = size, False


class PrefixCache(torch.nn.Module):
    """A Hugging Face causal LM that starts every row from the key/value cache of one prefix.

    Rows must begin with ``prefix``; only their later tokens are computed. Exact: causal
    attention makes the prefix's keys and values independent of what follows. Logits cover the
    last ``logits_to_keep`` positions, as for the wrapped model (which must be > 0 and at most
    the number of tokens after the prefix). Other per-token inputs (``token_type_ids``...) are
    split at the prefix like ``input_ids``; the prefix's cache is computed on first use with
    the per-token inputs the caller passes, so it matches the full forward exactly.
    """

    def __init__(self, model: torch.nn.Module, prefix: torch.Tensor):
        super().__init__()
        self.model = model
        self.prefix = prefix
        self._caches: dict[tuple[str, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}

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
            raise ValueError(f"PrefixCache returns logits of the {S - P} tokens after the prefix only; got logits_to_keep={logits_to_keep}.")
        if not torch.equal(input_ids[:, :P], self.prefix.to(input_ids.device).expand(B, -1)):
            raise ValueError("every row must begin with the cached prefix; was a prefix token masked?")
        kwargs.pop("use_cache", None)
        # The attention mask keeps the prefix's keys, as Hugging Face expects with a cache; a
        # 4D (B, 1, queries, keys) mask loses the prefix's queries.
        if attention_mask is not None and attention_mask.ndim == 4:
            attention_mask = attention_mask[:, :, P:]
        per_token = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor) and v.shape[:2] == (B, S)}
        for name, value in per_token.items():
            if not torch.equal(value[:, :P], value[:1, :P].expand_as(value[:, :P])):
                raise ValueError(f"every row must share the prefix's {name}.")
        layers = self._prefix_layers({k: v[:1, :P] for k, v in per_token.items()})
        cache = DynamicCache([(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in layers])
        kwargs.update({k: v[:, P:] for k, v in per_token.items()})
        kwargs[_cache_argument(type(self.model))] = cache
        return self.model(
            input_ids=input_ids[:, P:], attention_mask=attention_mask,
            use_cache=True, logits_to_keep=logits_to_keep, **kwargs,
        )

    def _prefix_layers(self, prefix_inputs: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keys, values) of the prefix, run once per distinct set of per-token
        prefix inputs (names and values)."""
        key = tuple((name, value.cpu().numpy().tobytes()) for name, value in sorted(prefix_inputs.items()))
        if key not in self._caches:
            prefix = self.prefix.to(input_device(self.model))
            with torch.inference_mode():
                output = self.model(input_ids=prefix, use_cache=True, **prefix_inputs)
            cache = output["cache"] if "cache" in output else output["past_key_values"]
            self._caches[key] = [(keys, values) for keys, values, *_ in cache]
        return self._caches[key]


def _cache_argument(model_class: type) -> str | None:
    """Name of the key/value cache argument of ``model_class.forward``, or None without one."""
    for name in ("cache", "past_key_values"):
        if forward_takes(model_class, name):
            return name
    return None


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, _OOM) or (isinstance(error, RuntimeError) and "out of memory" in str(error))


def input_device(model: torch.nn.Module) -> torch.device:
    """Where the model's inputs go: its input embeddings' device, else its first parameter's."""
    get = getattr(model, "get_input_embeddings", None)
    weight = getattr(get(), "weight", None) if callable(get) else None
    if weight is not None and weight.device.type != "meta":
        return weight.device
    for p in model.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


def model_fingerprint(model: torch.nn.Module) -> str:
    """Class name plus a SHA-256 of every parameter's and buffer's name, shape, dtype and bytes.

    Any change of any value (fine-tuning or pruning in place, another checkpoint loaded into
    the same object) changes it. Tensors are copied to the CPU one at a time; tensors on the
    ``meta`` device (offloaded elsewhere) contribute their name, shape and dtype only.
    """
    h = hashlib.sha256(type(model).__qualname__.encode())
    with torch.no_grad():
        for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
            for name, t in named:
                h.update(f"|{kind} {name} {tuple(t.shape)} {t.dtype}|".encode())
                if t.device.type != "meta":
                    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return f"{type(model).__name__} weights#{h.hexdigest()[:16]}"


# --------------------------------------------------------------------------- engine
class _Processes:
    """This process's place among those started by ``accelerate launch`` (or alone)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = 0
        if self.world > 1:
            from accelerate import PartialState

            # An existing state (e.g. the user's Accelerator) is reused; on a machine without
            # CUDA, processes talk over gloo (accelerate needs cpu=True for that).
            state = PartialState(cpu=not torch.cuda.is_available())
            self.rank, self.world = state.process_index, state.num_processes

    def gather(self, obj: Any) -> list:
        """``obj`` of every process, in rank order (a collective: every process must call it)."""
        if self.world == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])


class _ChunkSizer:
    """Masks per ``evaluate`` call of :func:`run_queries`: calls of about ``target`` seconds.

    The first call gets one mask; each later one as many as the last call's rate evaluates in
    ``target`` seconds, but at most twice the last call's masks, so that outputs are stored
    and the progress bar moves every few seconds even for slow models, while fast feature
    sets soon get ``maximum`` masks per call.
    """

    target = 2.0
    clock = staticmethod(time.perf_counter)

    def __init__(self, maximum: int):
        self.maximum = maximum
        self._next = 1

    def size(self, least: int = 1) -> int:
        """Masks for the next call: at least ``least``, at most ``maximum``."""
        return min(self.maximum, max(least, self._next))

    def timed(self, evaluate: Callable[[np.ndarray], Any], masks: np.ndarray) -> Any:
        """``evaluate(masks)``, timed to size the next call."""
        start = self.clock()
        outputs = evaluate(masks)
        seconds = self.clock() - start
        fit = len(masks) * self.target / seconds if seconds > 0 else float("inf")
        self._next = max(1, int(min(fit, 2 * len(masks))))
        return outputs


def _on_accelerator(features: FeatureSet) -> bool:
    """Whether ``features`` says it runs off the CPU (a ``device`` attribute, as a Query has)."""
    device = getattr(features, "device", None)
    return device is not None and torch.device(device).type != "cpu"


def _least_chunk(features: FeatureSet) -> int:
    """Masks for two forward passes of a :class:`Query` on an accelerator at its current
    batch size, so that every call measures a full batch and ``batch_size="auto"`` can grow;
    1 for other feature sets."""
    rows, inputs = getattr(features, "batch_size", None), getattr(features, "inputs", None)
    if not _on_accelerator(features) or not isinstance(rows, (int, np.integer)) or inputs is None:
        return 1
    return 2 * max(1, rows // min(n_examples(inputs), rows))


def _cache_fingerprint(features: FeatureSet) -> Mapping[str, str]:
    fingerprint = getattr(features, "fingerprint", None)
    if fingerprint is None:
        raise TypeError(
            f"cache_dir needs a feature set with a fingerprint() method; "
            f"{type(features).__name__} has none."
        )
    fp = fingerprint()
    return {"features": fp} if isinstance(fp, str) else fp


def run_queries(
    features: FeatureSet,
    masks,
    *,
    cache_dir: str | os.PathLike | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Evaluate ``features`` on every row of ``masks``, each distinct mask once.

    Parameters
    ----------
    features : FeatureSet
        E.g. a :class:`Query`, or any object with ``n`` and ``evaluate(masks)``.
    masks : (m, n) bool array
        True = feature kept.
    cache_dir : path, optional
        A :class:`~compattr.cache.QueryCache` folder: outputs found there are not recomputed,
        new ones are stored (durably) after each ``evaluate`` call. Needs
        ``features.fingerprint()``. Several runs (other seeds, other processes) may share one
        folder at once; under ``accelerate launch`` it must be on a filesystem that every
        process sees.
    chunk_size : int, optional
        Most masks per ``features.evaluate`` call; default 128, or 1,024 for a feature set on
        an accelerator (a :class:`Query` there grows its batches up to what one call holds).
        Calls start at one mask and grow while they take well under two seconds, so that
        outputs are stored and the progress bar moves every few seconds; a :class:`Query` on
        an accelerator always gets two forward passes' worth.
    progress : bool
        Show a tqdm progress bar (of the first process's share of the masks).

    Returns
    -------
    (m,) float64 array
        Output of each mask; identical on every process. Under ``accelerate launch``, end
        the script with ``accelerate.PartialState().destroy_process_group()``.

    Raises
    ------
    ValueError
        Masks of the wrong width, or non-finite outputs (nothing non-finite is cached).
    compattr.cache.CacheMismatchError
        ``cache_dir`` was made for another model, feature set, value function or inputs, or
        (:class:`~compattr.cache.CacheCorruptError`) is damaged.
    OSError
        Outputs could not be stored (e.g. a full disk); those are not marked as stored.
    """
    X = as_masks(masks, features.n, name="masks")
    if chunk_size is None:
        chunk_size = 1024 if _on_accelerator(features) else 128
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    procs = _Processes()
    _, first, inverse = np.unique(np.packbits(X, axis=1), axis=0, return_index=True, return_inverse=True)
    share = np.arange(procs.rank, len(first), procs.world)  # this process's distinct masks
    mine = X[first[share]]
    opened = nullcontext() if cache_dir is None else QueryCache(cache_dir, features.n, _cache_fingerprint(features))
    with opened as cache:
        values = np.full(len(mine), np.nan) if cache is None else cache.lookup(mine)
        bar = tqdm(
            total=len(mine), initial=int(np.isfinite(values).sum()), unit="mask",
            desc="queries" if procs.world == 1 else f"queries (process 1 of {procs.world})",
            disable=not progress or procs.rank != 0,
        )
        with bar:
            _evaluate_missing(features, mine, values, cache, chunk_size, bar)
    out = np.empty(len(first))
    for part, part_values in procs.gather((share, values)):
        out[part] = part_values
    return out[inverse.reshape(-1)]


def _evaluate_missing(
    features: FeatureSet, masks: np.ndarray, values: np.ndarray, cache: QueryCache | None, chunk_size: int, bar: tqdm
) -> None:
    """Fill the NaN entries of ``values`` ``(m,)`` with the outputs of their ``masks``
    ``(m, n)``, evaluated in timed chunks of at most ``chunk_size``; each chunk is stored in
    ``cache`` (whose stored outputs are taken) before the next one starts."""
    pending = np.flatnonzero(np.isnan(values))
    sizer = _ChunkSizer(chunk_size)
    done = 0
    while done < len(pending):
        chunk = pending[done : done + sizer.size(_least_chunk(features))]
        y = as_outputs(sizer.timed(features.evaluate, masks[chunk]), len(chunk), name="outputs of the feature set")
        values[chunk] = y if cache is None else cache.store(masks[chunk], y)
        done += len(chunk)
        bar.update(len(chunk))
