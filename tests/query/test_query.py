"""The query engine: batching, layer replay, out-of-memory, chunks (the disk cache, resume and
processes: test_cache.py)."""

import numpy as np
import pytest
import torch

from compattr._testing import tiny_bert, tiny_causal_lm, tiny_gemma3, tiny_gpt2, tiny_llama
from compattr.cache import QueryCache
from compattr.features import AttentionHeads, check_feature_set
from compattr.query import Query, cache_folder, run_queries
from compattr.values import ClassLogit, LogLikelihood

torch.set_num_threads(1)


def examples(E=3, seq=6, seed=0):
    return torch.randint(6, 60, (E, seq), generator=torch.Generator().manual_seed(seed))


def random_masks(m, n, seed=0):
    return np.random.default_rng(seed).random((m, n)) < 0.5


def naive(model, heads, value, inputs, X):
    """One mask per forward, examples one at a time: the reference."""
    with torch.no_grad():
        x, t = value.prepare(model, inputs, 1)
        out = []
        for mask in X:
            scores = []
            for e in range(len(x)):
                with heads.masked(mask):
                    scores.append(value.score(model, x[e : e + 1], t[e : e + 1]))
            out.append(value.reduce(torch.cat(scores)[None])[0].item())
    return np.array(out)


class Counting:
    """Wraps a feature set; records every mask row it evaluates; can fail after some calls."""

    def __init__(self, features, fail_after=None):
        self.features, self.fail_after, self.rows = features, fail_after, []
        self.n, self.names, self.groups = features.n, features.names, features.groups

    def evaluate(self, masks):
        if self.fail_after is not None and len(self.rows) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.rows += [m.tobytes() for m in masks]
        return self.features.evaluate(masks)

    def fingerprint(self):
        return self.features.fingerprint()


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2, tiny_bert])
def test_batched_evaluation_equals_one_mask_per_forward(build):
    model = build()
    heads = AttentionHeads(model)
    X = random_masks(10, heads.n)
    expected = naive(model, heads, ClassLogit(), examples(), X)
    for batch_size in (1, 4, 64):
        got = Query(model, heads, ClassLogit(), examples(), batch_size=batch_size).evaluate(X)
        assert np.allclose(got, expected, atol=1e-5), batch_size


def test_a_model_in_training_mode_is_evaluated_in_eval_mode_and_left_as_it_was():
    """GPT-2 keeps dropout in training mode: the same mask gave three different outputs, and
    the cache kept one of them. Evaluation now runs in eval mode and restores each module's
    own mode after (a module the user set to eval stays in eval)."""
    model = tiny_gpt2(seed=3)
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
    heads = AttentionHeads(model)
    X = np.repeat(random_masks(1, heads.n, seed=2), 3, axis=0)
    expected = naive(model.eval(), heads, ClassLogit(), examples(), X[:1])
    model.train()
    model.lm_head.eval()
    query = Query(model, heads, ClassLogit(), examples())
    got = query.evaluate(X)
    assert np.allclose(got, expected[0], atol=1e-6)
    assert model.training and model.transformer.h[0].training and not model.lm_head.training
    assert np.isfinite(query.mask_gradient()).all() and model.training
    with torch.no_grad():
        assert not torch.equal(model(examples()).logits, model(examples()).logits)  # dropout still on


@pytest.mark.parametrize("layers", [[0, 1], [2, 3], [4, 5], [1, 5]])
def test_layer_replay_equals_the_full_forward(layers):
    model = tiny_llama(layers=6)
    heads = AttentionHeads(model, layers=layers)
    value = LogLikelihood(max_new_tokens=2)
    inputs = {"input_ids": examples(E=3), "attention_mask": torch.ones(3, 6, dtype=torch.long)}
    X = random_masks(12, heads.n)
    plain = Query(model, heads, value, inputs, batch_size=8, replay=False)
    fast = Query(model, heads, value, inputs, batch_size=8)
    assert (fast._layer_replay is None) == (layers[0] == 0)
    calls = []
    handle = model.model.layers[0].mlp.register_forward_hook(lambda *a: calls.append(a[1][0].shape[0]))
    try:
        got = fast.evaluate(X)
    finally:
        handle.remove()
    assert np.allclose(got, plain.evaluate(X), atol=1e-5)
    if layers[0] > 0:  # layer 0 ran once per example batch (prepare, capture), not per mask
        assert sum(calls) <= 3 * (1 + 2 + 1)


class _OOMOver:
    """A model wrapper that runs out of memory on batches larger than ``limit``."""

    def __init__(self, model, limit):
        self.model, self.limit, self.sizes = model, limit, []

    def __call__(self, *args, **kwargs):
        batch = (args[0] if args else kwargs["input_ids"]).shape[0]
        self.sizes.append(batch)
        if batch > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return self.model(*args, **kwargs)


def test_batch_size_shrinks_on_out_of_memory(monkeypatch):
    model = tiny_gpt2()
    heads = AttentionHeads(model)
    X = random_masks(9, heads.n)
    expected = Query(model, heads, ClassLogit(), examples(E=2)).evaluate(X)
    query = Query(model, heads, ClassLogit(), examples(E=2), batch_size=32)
    wrapped = _OOMOver(model, limit=5)
    monkeypatch.setattr(query, "model", wrapped)
    monkeypatch.setattr(heads, "model", wrapped)
    assert np.allclose(query.evaluate(X), expected, atol=1e-5)
    assert query.batch_size == 4 and max(wrapped.sizes) == 18  # 9 masks x 2 examples
    wrapped.limit = 0
    with pytest.raises(torch.OutOfMemoryError):
        query.evaluate(X)
    assert query.batch_size == 1


def test_query_is_a_conforming_feature_set():
    model = tiny_llama()
    check_feature_set(Query(model, AttentionHeads(model, layers=[1, 2]), ClassLogit(), examples(), batch_size=5))


def test_query_refuses_features_of_another_model_and_missing_inputs():
    heads = AttentionHeads(tiny_gpt2())
    with pytest.raises(ValueError, match="another model"):
        Query(tiny_gpt2(), heads, ClassLogit(), examples())
    with pytest.raises(ValueError, match="owns no inputs; pass inputs="):
        Query(heads.model, heads, ClassLogit())


def heads_query(seed=0, layers=None, value=None):
    model = tiny_llama(seed=seed)
    return Query(model, AttentionHeads(model, layers=layers), value or ClassLogit(), examples(), batch_size=4)


def test_run_queries_evaluates_each_distinct_mask_once():
    counting = Counting(heads_query())
    X = random_masks(10, counting.n)
    X = np.vstack([X, X[:4]])
    y = run_queries(counting, X, chunk_size=3, progress=False)
    assert len(counting.rows) == 10 and len(set(counting.rows)) == 10
    assert np.array_equal(y[10:], y[:4])
    assert np.allclose(y, counting.features.evaluate(X), atol=1e-6)


def test_bad_input_gets_clear_errors(tmp_path):
    query = heads_query()
    with pytest.raises(ValueError, match="masks has 5 columns but there are n=12 features"):
        run_queries(query, np.ones((2, 5), bool))

    class NaNs:
        n, names, groups = 3, ["a", "b", "c"], np.zeros(3)

        def evaluate(self, masks):
            return np.where(masks.all(1), np.nan, 1.0)

        def fingerprint(self):
            return "nans"

    with pytest.raises(ValueError, match="non-finite value"):
        run_queries(NaNs(), np.ones((2, 3), bool), cache_dir=tmp_path, progress=False)
    assert (cache_folder(tmp_path, "nans") / "manifest.json").is_file()
    with QueryCache(cache_folder(tmp_path, "nans"), 3, {"features": "nans"}) as cache:
        assert len(cache) == 0 and np.isnan(cache.lookup(np.ones((1, 3), bool))).all()


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2])
@pytest.mark.parametrize("value", [ClassLogit(), LogLikelihood(max_new_tokens=3)], ids=repr)
def test_prefix_kv_cache_reuse_equals_the_full_forward(build, value):
    from compattr._testing import word_tokenizer
    from compattr.features import Words

    model = build()
    prefix = "[BOS] " + " ".join(f"w{i}" for i in range(10, 30)) + " "
    words = Words(word_tokenizer(), "w1 w2 w3 w4 w5", prefix=prefix, suffix=" w6 w7")
    assert words.fixed_prefix == 21
    X = random_masks(9, words.n)
    fast = Query(model, words, value, batch_size=4)
    assert fast._prefix_cache is not None
    embed = model.get_input_embeddings()
    seen = []
    handle = embed.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    try:
        got = fast.evaluate(X)
    finally:
        handle.remove()
    expected = Query(model, words, value, batch_size=4, replay=False).evaluate(X)
    assert np.allclose(got, expected, atol=1e-5)
    prompt = len(words.token_units)
    assert set(seen[-3:]) == {prompt - 21 + (3 if isinstance(value, LogLikelihood) else 0)}


def _sliding_mistral():
    return tiny_causal_lm("Mistral", sliding_window=4)


def _mixed_gemma3():
    """Gemma 3 with a sliding layer (window 4) and a global one, as the real models mix them."""
    from transformers import Gemma3ForCausalLM

    from compattr._testing import _gemma3_text_config

    config = _gemma3_text_config(2, 4, 2, 32, 12)
    config.layer_types = ["sliding_attention", "full_attention"]
    torch.manual_seed(0)
    return Gemma3ForCausalLM(config).eval()


@pytest.mark.parametrize("build", [_sliding_mistral, tiny_gemma3, _mixed_gemma3])
@pytest.mark.parametrize("value", [ClassLogit(), LogLikelihood(max_new_tokens=3)], ids=repr)
def test_prefix_longer_than_a_sliding_window_gives_the_full_forward(build, value):
    """A sliding-window layer caches only the prefix's last tokens: where the prefix is at
    least as long as the window, the rows run whole instead of reading a shortened cache
    (which shifted every later token, or failed where layers mixed window and global)."""
    from compattr._testing import word_tokenizer
    from compattr.features import Words

    model = build()
    words = Words(word_tokenizer(), "w4 w5 w6 w7 w8 w9", prefix="w1 w2 w3 w10 w11 w12 w13 ")
    assert words.fixed_prefix == 7 > model.config.sliding_window
    X = random_masks(9, words.n)
    fast = Query(model, words, value, batch_size=4)
    assert fast._prefix_cache is not None
    expected = Query(model, words, value, batch_size=4, replay=False).evaluate(X)
    np.testing.assert_allclose(fast.evaluate(X), expected, atol=1e-6)
    assert np.ptp(expected) > 0


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2])
def test_prefix_kv_cache_with_packed_multiple_choice(build):
    """Words after a fixed prefix, scored by packed multiple-choice rows (4D attention mask):
    the prefix cache gives the full forward's outputs."""
    from compattr._testing import word_tokenizer
    from compattr.features import Words
    from compattr.values import MultipleChoice

    model = build()
    words = Words(word_tokenizer(), "w1 w2 w3 w4", prefix="[BOS] w10 w11 w12 w13 w14 ", suffix=" w6")
    value = MultipleChoice([[[20], [21, 22], [23]]], [1])
    X = random_masks(7, words.n)
    fast = Query(model, words, value, batch_size=4)
    assert fast._prefix_cache is not None and fast._prepare()[0]["attention_mask"].ndim == 4
    expected = Query(model, words, value, batch_size=4, replay=False).evaluate(X)
    np.testing.assert_allclose(fast.evaluate(X), expected, atol=1e-5)
    assert np.ptp(expected) > 0


def test_layer_replay_with_packed_multiple_choice():
    from compattr.values import MultipleChoice

    model = tiny_llama(layers=4)
    heads = AttentionHeads(model, layers=[2, 3])
    prompts = torch.randint(6, 60, (3, 5), generator=torch.Generator().manual_seed(2))
    value = MultipleChoice([[[10], [11, 12], [13]], [[14], [15], [16, 17]], [[18], [19], [20]]], [1, 0, 2])
    X = random_masks(7, heads.n)
    fast = Query(model, heads, value, prompts, batch_size=6)
    assert fast._layer_replay is not None and fast._prepare()[0]["attention_mask"].ndim == 4
    expected = Query(model, heads, value, prompts, batch_size=6, replay=False).evaluate(X)
    np.testing.assert_allclose(fast.evaluate(X), expected, atol=1e-5)
    assert np.ptp(expected) > 0


def test_prefix_cache_refuses_rows_with_another_prefix():
    from compattr.query import PrefixCache

    model = tiny_llama()
    cached = PrefixCache(model, examples(E=1)[:, :3])
    with pytest.raises(ValueError, match="begin with the cached prefix"):
        cached(examples(E=2, seed=5), logits_to_keep=1)
    with pytest.raises(ValueError, match="logits of the 3 tokens after the prefix"):
        cached(examples(E=1), logits_to_keep=0)


def _cache_name(model) -> str:
    """How this transformers spells a causal LM's key/value cache argument."""
    import inspect

    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


class _PastKeyValuesSpelling(torch.nn.Module):
    """A causal LM as transformers before 5.24 spelled it: ``past_key_values``, in and out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=None, logits_to_keep=0):
        return _renamed(
            self.model,
            "past_key_values",
            past_key_values,
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
        )


class _CacheSpelling(torch.nn.Module):
    """A causal LM as transformers 5.24 and later spell it: ``cache``, in and out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, cache=None, use_cache=None, logits_to_keep=0):
        return _renamed(
            self.model,
            "cache",
            cache,
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
        )


def _renamed(model, name, cache, **kwargs):
    inner = _cache_name(model)
    out = model(**{inner: cache}, **kwargs)
    return {"logits": out.logits, name: out[inner]}


def test_prefix_cache_takes_both_spellings_of_the_cache_argument():
    """transformers 5.24 renamed ``past_key_values`` to ``cache``: both give the full forward."""
    from compattr.query import PrefixCache

    model = tiny_llama()
    ids = examples(E=2)
    ids[1, :3] = ids[0, :3]
    with torch.no_grad():
        full = model(input_ids=ids).logits[:, -2:]
        for spelling in (_PastKeyValuesSpelling(model), _CacheSpelling(model)):
            assert PrefixCache.supports(spelling)
            got = PrefixCache(spelling, ids[:1, :3])(ids, logits_to_keep=2)["logits"]
            torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)
    assert not PrefixCache.supports(tiny_bert())


def test_prefix_cache_follows_the_prefix_token_types_of_each_call():
    """Two calls whose rows share the prefix but differ in its token_type_ids: each gets the
    logits of the full forward with its own token types, not the first call's cache."""
    from compattr.query import PrefixCache

    model = tiny_gpt2()
    ids = examples(E=2)
    ids[1, :3] = ids[0, :3]
    cached = PrefixCache(model, ids[:1, :3])
    for prefix_type in (0, 1):
        types = torch.zeros_like(ids)
        types[:, :3] = prefix_type
        with torch.no_grad():
            full = model(input_ids=ids, token_type_ids=types).logits[:, -2:]
            got = cached(ids, token_type_ids=types, logits_to_keep=2).logits
        torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "rates, sizes",
    [
        ([1, 10, 20, 40, 80], [256, 512, 1024, 2048, 4096]),  # keeps doubling while it pays
        ([1, 10, 20, 21], [256, 512, 1024, 1024]),  # +5 %: stays at the larger size
        ([1, 10, 20, 15], [256, 512, 1024, 512]),  # slower: back to the best size
        ([1] + [10 * 2**i for i in range(8)], [256, 512, 1024, 2048, 4096, 8192, 8192, 8192, 8192]),  # limit
    ],
)
def test_auto_batch_size_grows_while_throughput_rises(rates, sizes):
    from compattr.query.evaluator import _BatchSizer

    sizer, seen = _BatchSizer(256), []
    for rate in rates:
        sizer.observe(rate)  # the first report is the warm-up
        seen.append(sizer.size)
    assert seen == sizes
    sizer.stop(128)
    sizer.observe(1e9)
    assert sizer.size == 128


def test_auto_batch_size_gives_the_same_outputs():
    model = tiny_llama()
    heads = AttentionHeads(model)
    X = random_masks(900, heads.n)  # several full batches of 128 masks x 2 examples
    x = torch.randint(6, 60, (2, 6), generator=torch.Generator().manual_seed(0))
    auto = Query(model, heads, ClassLogit(), x, batch_size="auto")
    assert auto.batch_size == 256 and auto._sizer is not None
    np.testing.assert_allclose(
        auto.evaluate(X), Query(model, heads, ClassLogit(), x, batch_size=64).evaluate(X), atol=1e-5
    )
    assert auto._sizer._warm and auto._sizer._best is not None  # full batches were measured
    with pytest.raises(ValueError, match="positive int or 'auto'"):
        Query(model, heads, ClassLogit(), x, batch_size="big")


@pytest.mark.parametrize("device, chunk", [(None, 128), ("cpu", 128), ("meta", 1024)])
def test_run_queries_chunks_follow_the_device(device, chunk):
    """Bigger evaluate calls off the CPU, so that batch_size='auto' has masks to grow into."""

    class Recording:
        n, names, groups = 20, [f"f{i}" for i in range(20)], np.zeros(20, int)

        def __init__(self):
            self.calls = []
            if device is not None:
                self.device = torch.device(device)

        def evaluate(self, masks):
            self.calls.append(len(masks))
            return masks.sum(1).astype(float)

    features = Recording()
    X = random_masks(3000, 20, seed=1)  # (almost) all distinct
    np.testing.assert_array_equal(run_queries(features, X, progress=False), X.sum(1))
    assert max(features.calls) == chunk


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("layers", [[0, 1], [2, 3]])
def test_query_on_cuda_equals_cpu(layers):
    """Heads masked on a GPU (packed multiple choice, layer replay, auto batch size) give the
    CPU's outputs, and the rows never leave the model's device."""
    from compattr.values import MultipleChoice

    prompts = torch.randint(6, 60, (3, 5), generator=torch.Generator().manual_seed(2))
    value = MultipleChoice([[[10], [11, 12], [13]], [[14], [15], [16, 17]], [[18], [19], [20]]], [1, 0, 2])
    X = random_masks(300, 8)
    outputs = {}
    for device in ("cpu", "cuda"):
        model = tiny_llama(layers=4).to(device)
        query = Query(model, AttentionHeads(model, layers=layers), value, prompts, batch_size="auto")
        assert query._prepare()[0]["input_ids"].device.type == device
        outputs[device] = query.evaluate(X)
    np.testing.assert_allclose(outputs["cuda"], outputs["cpu"], atol=1e-4)
    assert np.ptp(outputs["cpu"]) > 0


@pytest.mark.parametrize("change", ["load_state_dict", "in place"])
def test_weights_changed_in_place_are_seen_by_a_reused_query(tmp_path, change):
    """A query reused after another checkpoint was loaded into its model answered from its
    greedy answers and replayed layers of the old weights (0.14 off), and stored that under
    the new weights' cache key. Words with a prefix reuse its key/value cache the same way."""
    from compattr._testing import word_tokenizer
    from compattr.features import Words

    model = tiny_llama(layers=3, heads=4, kv_heads=2, seed=1)
    other = tiny_llama(layers=3, heads=4, kv_heads=2, seed=2).state_dict()
    inputs = torch.randint(6, 50, (3, 10), generator=torch.Generator().manual_seed(0))
    heads = AttentionHeads(model, layers=[2])  # layers 0 and 1 are replayed
    prefix = "[BOS] " + " ".join(f"w{i}" for i in range(10, 20)) + " "
    words = Words(word_tokenizer(), "w1 w2 w3 w4", prefix=prefix)
    queries = [Query(model, heads, LogLikelihood(max_new_tokens=2), inputs), Query(model, words, ClassLogit())]
    masks = [random_masks(8, q.n) for q in queries]
    before = [run_queries(query, X, cache_dir=tmp_path, progress=False) for query, X in zip(queries, masks)]
    with torch.no_grad():
        if change == "load_state_dict":
            model.load_state_dict(other)
        else:
            for parameter in model.parameters():
                parameter.mul_(1.5)
    for query, X, old in zip(queries, masks, before):
        fresh = Query(model, query.features, query.value, query.inputs).evaluate(X)
        assert np.abs(fresh - old).max() > 1e-3  # the new weights answer otherwise
        np.testing.assert_allclose(run_queries(query, X, cache_dir=tmp_path, progress=False), fresh, atol=1e-5)


@pytest.mark.parametrize("shared", [0, 2])
def test_gemma3n_is_not_replayed(shared):
    """Gemma 3n's blocks pass AltUp states with an extra leading axis, and its KV-shared
    layers read keys the skipped blocks store: the default layer replay failed on both."""
    model = tiny_causal_lm(
        "Gemma3n",
        config_family="Gemma3nText",
        vocab_size_per_layer_input=64,
        hidden_size_per_layer_input=8,
        num_hidden_layers=4,
        head_dim=8,
        num_kv_shared_layers=shared,
        layer_types=["sliding_attention", "full_attention"] * 2,
        sliding_window=4,
        activation_sparsity_pattern=[0.0] * 4,
        altup_num_inputs=2,
        laurel_rank=4,
    )
    heads = AttentionHeads(model, layers=[2, 3], rescale=False)
    x = {"input_ids": torch.randint(9, 60, (3, 6), generator=torch.Generator().manual_seed(1))}
    X = random_masks(4, heads.n)
    fast = Query(model, heads, ClassLogit(), x)
    assert fast._layer_replay is None
    np.testing.assert_array_equal(fast.evaluate(X), Query(model, heads, ClassLogit(), x, replay=False).evaluate(X))


def test_mask_gradient_with_rescaled_heads_is_gradient_times_activation_less_its_layer_mean():
    """The docstring promised gradient × activation under zero ablation; with the default
    rescale (kept heads × H/k) the rescale moves with the mask: less the layer's mean."""
    model = tiny_llama(layers=3).double()
    x = torch.randint(6, 60, (2, 5), generator=torch.Generator().manual_seed(0))
    plain = Query(model, AttentionHeads(model, layers=[2], rescale=False), ClassLogit(), x).mask_gradient()
    rescaled = Query(model, AttentionHeads(model, layers=[2]), ClassLogit(), x).mask_gradient()
    np.testing.assert_allclose(rescaled, plain - plain.mean(), atol=1e-8)  # float32 factors
    assert np.abs(plain - plain.mean()).max() > 1e-4  # the two differ
