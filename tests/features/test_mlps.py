"""MLP blocks as features, alone and combined with heads: against weight and activation surgery."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import compattr
from compattr._testing import tiny_bert, tiny_causal_lm, tiny_gpt2, tiny_llama, tiny_opt, word_tokenizer
from compattr.features import AttentionHeads, Components, MLPBlocks
from compattr.query import MaskedModel
from compattr.values import ClassLogit

torch.set_num_threads(1)

BUILDERS = {"llama": tiny_llama, "gpt2": tiny_gpt2, "bert": tiny_bert, "opt": tiny_opt}  # OPT: flat fc2


def mlp_out(model, layer):
    """The module whose output is layer ``layer``'s MLP contribution, spelled out per family."""
    kind = model.config.model_type
    if kind == "llama":
        return model.model.layers[layer].mlp.down_proj
    if kind == "gpt2":
        return model.transformer.h[layer].mlp.c_proj
    if kind == "opt":
        return model.model.decoder.layers[layer].fc2
    return model.bert.encoder.layer[layer].output.dense


def n_layers(model):
    return getattr(model.config, "num_hidden_layers", None) or model.config.n_layer


def zero_mlps(model, masked_layers):
    """A copy of ``model`` whose masked layers' MLP output projections are zero (weight and bias)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for layer in masked_layers:
            proj = mlp_out(model, layer)
            proj.weight.zero_()
            if getattr(proj, "bias", None) is not None:
                proj.bias.zero_()
    return model


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def ids(batch=3, seq=6, seed=0):
    return torch.randint(6, 60, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=sorted(BUILDERS))
def model(request):
    return BUILDERS[request.param]()


def test_masking_equals_zeroing_the_mlp_output_weights_per_row(model):
    mlps = MLPBlocks(model)
    L = n_layers(model)
    assert mlps.n == L and mlps.names == [f"L{l}.MLP" for l in range(L)] and mlps.groups.tolist() == list(range(L))
    masks = np.array([[True] * L, [False] + [True] * (L - 1), [l % 2 == 1 for l in range(L)]])
    x = ids()
    with mlps.masked(masks):
        got = logits(model, x)
    for b, row in enumerate(masks):
        want = logits(zero_mlps(model, np.flatnonzero(~row)), x[b : b + 1])
        assert torch.allclose(got[b : b + 1], want, atol=1e-5), b
    assert not torch.allclose(got[1], got[0], atol=1e-4)


def test_mean_ablation_leaves_out_the_padding_of_a_tokenizers_output():
    """A tokenizer's BatchEncoding (a mapping, not a dict) keeps its padding out of the means."""
    model, tokenizer = tiny_llama(layers=2), word_tokenizer()
    encoded = tokenizer(["w1 w2 w3 w4 w5 w6", "w7"], padding=True, return_tensors="pt")
    mask = np.array([True, False])

    def masked_logits(reference):
        with MLPBlocks(model, ablation="mean", reference=reference).masked(mask):
            return logits(model, ids())

    as_encoded = masked_logits(encoded)
    assert torch.allclose(as_encoded, masked_logits(dict(encoded)))
    assert not torch.allclose(as_encoded, masked_logits({"input_ids": encoded["input_ids"]}), atol=1e-4)


def test_a_site_that_flattens_the_tokens_is_read_per_token():
    """OPT's fc2 outputs ``[batch·tokens, hidden]``: the mean ablation averaged the padding in
    (its attention mask did not fit), and patching and one mask per row were refused."""
    model = tiny_opt()
    reference, clean = ids(batch=2, seq=6, seed=6), ids(batch=2, seq=6, seed=8)
    attended = torch.ones(2, 6, dtype=torch.long)
    attended[0, 3:] = 0
    site = model.model.decoder.layers[0].fc2

    def output_of_fc2(x):
        """fc2's output as the residual stream receives it (a hook registered last runs last)."""
        seen = []
        handle = site.register_forward_hook(lambda m, a, out: seen.append(out.detach().clone()))
        try:
            logits(model, x)
        finally:
            handle.remove()
        return seen[0]

    plain = output_of_fc2(reference)
    assert plain.shape == (12, 32)  # the flattened layout this test is for
    padded = {"input_ids": reference, "attention_mask": attended}
    with MLPBlocks(model, layers=[0], ablation="mean", reference=padded).masked(np.zeros(1, bool)):
        mean = output_of_fc2(clean)
    tokens = plain.view(2, 6, -1)[attended.bool()]  # the 9 attended tokens
    assert torch.allclose(mean, tokens.mean(0).expand_as(mean), atol=1e-6)
    own = output_of_fc2(clean)
    with MLPBlocks(model, layers=[0], ablation="patch", corrupted=reference).masked(np.array([[False], [True]])):
        patched = output_of_fc2(clean)
    assert torch.allclose(patched[:6], plain[:6], atol=1e-6)  # row 0 masked: the corrupted run's row 0
    assert torch.allclose(patched[6:], own[6:], atol=1e-6)  # row 1 kept: its own output
    assert not torch.allclose(own[:6], plain[:6], atol=1e-4)


def test_mean_and_patch_replace_the_mlp_output():
    model = tiny_llama(layers=2)
    reference, clean, corrupted = ids(batch=4, seed=3), ids(batch=3, seed=4), ids(batch=3, seed=5)
    site = model.model.layers[1].mlp

    def output_of_mlp(run):
        """The MLP's output as the residual stream receives it (a hook registered last runs last)."""
        seen = []
        handle = site.register_forward_hook(lambda m, a, out: seen.append(out.detach().clone()))
        try:
            run()
        finally:
            handle.remove()
        return seen[0]

    ref = output_of_mlp(lambda: logits(model, reference))
    bad = output_of_mlp(lambda: logits(model, corrupted))
    plain = output_of_mlp(lambda: logits(model, clean))
    mask = np.array([True, False])
    with MLPBlocks(model, ablation="mean", reference=reference).masked(mask):
        mean = output_of_mlp(lambda: logits(model, clean))
    with MLPBlocks(model, ablation="patch", corrupted=corrupted).masked(mask):
        patched = output_of_mlp(lambda: logits(model, clean))
    with MLPBlocks(model, ablation="patch", corrupted=corrupted).masked(mask, examples=[2]):
        one = output_of_mlp(lambda: logits(model, clean[2:3]))
    with MLPBlocks(model, ablation="patch", corrupted=corrupted).masked(np.ones(2, bool)):
        kept = output_of_mlp(lambda: logits(model, clean))
    assert torch.allclose(mean, ref.flatten(0, 1).mean(0).expand_as(mean), atol=1e-6)
    assert torch.allclose(patched, bad, atol=1e-6) and torch.allclose(one, bad[2:3], atol=1e-6)
    assert torch.allclose(kept, plain, atol=1e-6) and not torch.allclose(plain, bad, atol=1e-4)
    with pytest.raises(ValueError, match="needs corrupted"):
        MLPBlocks(model, ablation="patch")
    patcher = MLPBlocks(model, ablation="patch", corrupted=corrupted)
    with pytest.raises(ValueError, match="pass examples="), patcher.masked(mask):
        logits(model, ids(batch=5))


def test_heads_plus_mlps_is_one_feature_vector_equal_to_both_surgeries():
    model = tiny_llama(layers=3, heads=4)
    heads, mlps = AttentionHeads(model, rescale=False), MLPBlocks(model)
    both = heads + mlps
    assert isinstance(both, Components) and both.n == 12 + 3
    assert both.names[:2] == ["L0.H0", "L0.H1"] and both.names[-1] == "L2.MLP"
    assert both.groups.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [0, 1, 2]
    assert both.kinds.tolist() == ["AttentionHeads"] * 12 + ["MLPBlocks"] * 3
    mask = np.ones(15, bool)
    mask[[1, 6, 12 + 2]] = False  # L0.H1, L1.H2, L2.MLP
    surgery = zero_mlps(model, [2])
    D = model.model.layers[0].self_attn.o_proj.weight.shape[1] // 4  # head width
    with torch.no_grad():
        for layer, head in ((0, 1), (1, 2)):
            surgery.model.layers[layer].self_attn.o_proj.weight[:, head * D : (head + 1) * D] = 0
    x = ids()
    with both.masked(mask):
        got = logits(model, x)
    assert torch.allclose(got, logits(surgery, x), atol=1e-5)
    # through a MaskedModel with layer replay (the union starts at its earliest layer)
    late = AttentionHeads(model, layers=[2], rescale=False) + MLPBlocks(model, layers=[1, 2])
    masks = np.random.default_rng(0).random((5, late.n)) < 0.5
    fast = MaskedModel(model, late, ClassLogit(), x).evaluate(masks)
    full = MaskedModel(model, late, ClassLogit(), x, replay=False).evaluate(masks)
    assert late.layer_replay().start == 1
    np.testing.assert_allclose(fast, full, atol=1e-5)
    with pytest.raises(ValueError, match="same model"):
        heads + MLPBlocks(tiny_llama(layers=3, heads=4))


def test_explain_on_heads_and_mlps_counts_both_in_its_energy_split():
    model = tiny_llama(layers=2, heads=4)
    features = AttentionHeads(model, rescale=False) + MLPBlocks(model)
    ex = compattr.explain(
        features=features, value=ClassLogit(), inputs=ids(batch=4), budget=200, test_masks=50, progress=False
    )
    assert ex.names[-2:] == ["L0.MLP", "L1.MLP"] and ex.groups.tolist() == [0] * 4 + [1] * 4 + [0, 1]
    e = ex.energy()
    assert e.linear + e.within + e.cross == pytest.approx(1.0)


@pytest.mark.parametrize("build", [tiny_llama, tiny_opt])
def test_transformerlens_mlp_masking_equals_the_hf_one(tmp_path, build):
    """Per-row masks; OPT's bridge flattens the tokens at hook_mlp_out, as its Hugging Face
    model does (it refused more than one mask row)."""
    bridges = pytest.importorskip("transformer_lens.model_bridge", reason="needs the 'lens' extra (transformer-lens 4)")
    from transformers import AutoTokenizer

    word_tokenizer().save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    model = build()
    hf = copy.deepcopy(model)
    bridge = bridges.TransformerBridge.boot_transformers("tiny", hf_model=model, tokenizer=tokenizer)
    n = MLPBlocks(hf).n
    masks = np.array([[i % 2 == 0 for i in range(n)], [i % 2 == 1 for i in range(n)]])
    x = ids(batch=2)
    with MLPBlocks(hf).masked(masks):
        expected = logits(hf, x)
    with MLPBlocks(bridge).masked(masks), torch.no_grad():
        got = bridge(x)
    assert torch.allclose(got, expected, atol=1e-5)
    X = np.random.default_rng(0).random((5, n)) < 0.5  # 5 masks x 2 examples per forward pass
    np.testing.assert_allclose(
        MaskedModel(bridge, MLPBlocks(bridge), ClassLogit(), x).evaluate(X),
        MaskedModel(hf, MLPBlocks(hf), ClassLogit(), x).evaluate(X),
        atol=1e-5,
    )


def test_kv_groups_and_attention_layers_switch_their_heads_together():
    from compattr.features import attention_layers, kv_groups

    model = tiny_llama(layers=3, heads=4, kv_heads=2)
    heads = AttentionHeads(model, rescale=False)
    kv = kv_groups(heads)
    assert kv.n == 6 and kv.names[:3] == ["L0.KV0", "L0.KV1", "L1.KV0"] and kv.groups.tolist() == [0, 0, 1, 1, 2, 2]
    group_mask = np.array([[True, False, True, True, False, True], [False, True, True, False, True, True]])
    by_hand = np.repeat(group_mask, 2, axis=1)  # query heads 2g, 2g + 1 read key/value head g
    x = ids(batch=2)
    with kv.masked(group_mask):
        got = logits(model, x)
    with heads.masked(by_hand):
        assert torch.allclose(got, logits(model, x), atol=1e-6)
    layers = attention_layers(heads)
    assert layers.names == ["L0.attn", "L1.attn", "L2.attn"] and layers.n == 3
    surgery = copy.deepcopy(model)
    with torch.no_grad():
        surgery.model.layers[1].self_attn.o_proj.weight.zero_()
    with layers.masked(np.array([True, False, True])):
        assert torch.allclose(logits(model, x), logits(surgery, x), atol=1e-5)
    both = kv + MLPBlocks(model)
    assert both.n == 9 and both.names[-1] == "L2.MLP"
    masks = np.random.default_rng(1).random((4, both.n)) < 0.5
    value = ClassLogit()
    rows, targets = value.prepare(model, x, 8)
    expected = []
    for m in masks:  # one mask at a time, by hand: kv groups expanded to heads, plus the MLPs
        with heads.masked(np.repeat(m[:6], 2)), MLPBlocks(model).masked(m[6:]), torch.no_grad():
            expected.append(float(value.score(model, rows, targets).mean()))
    np.testing.assert_allclose(MaskedModel(model, both, value, x).evaluate(masks), expected, atol=1e-5)
    from compattr.features import Grouped

    with pytest.raises(ValueError, match="one entry per feature"):
        Grouped(heads, np.zeros(3))
    # found only after every query and the fit, or never
    labels = np.arange(heads.n) // 2
    with pytest.raises(ValueError, match="groups must have one entry per group"):
        Grouped(heads, labels, groups=[0, 1])
    with pytest.raises(ValueError, match="names must be distinct"):
        Grouped(heads, labels, names=["a"] * (heads.n // 2))


@pytest.mark.parametrize("batch, seq", [(3, 6), (4, 4)])  # (4, 4): tokens = examples = heads
def test_mask_gradient_is_attribution_patching_written_out_by_hand(batch, seq):
    """``MaskedModel.mask_gradient`` under patching equals gradient × (clean − corrupted)
    activation, computed here from hooks on the raw model, per head and per MLP."""
    model = tiny_llama(layers=2, heads=4)
    clean, corrupted = ids(batch=batch, seq=seq, seed=7), ids(batch=batch, seq=seq, seed=8)
    labels = [5, 9, 11, 13][:batch]
    value = ClassLogit(labels=labels)
    parts = AttentionHeads(model, rescale=False, ablation="patch", corrupted=corrupted) + MLPBlocks(
        model, ablation="patch", corrupted=corrupted
    )
    got = MaskedModel(model, parts, value, clean).mask_gradient()

    heads_in = [model.model.layers[l].self_attn.o_proj for l in range(2)]
    mlps_out = [model.model.layers[l].mlp for l in range(2)]

    def activations(x, keep_graph):
        seen = {}
        hooks = [
            m.register_forward_pre_hook(lambda mod, a, l=l: seen.__setitem__(("h", l), a[0]))
            for l, m in enumerate(heads_in)
        ]
        hooks += [
            m.register_forward_hook(lambda mod, a, o, l=l: seen.__setitem__(("m", l), o))
            for l, m in enumerate(mlps_out)
        ]
        try:
            with torch.set_grad_enabled(keep_graph):
                out = model(x).logits[:, -1]
        finally:
            for h in hooks:
                h.remove()
        return seen, out

    bad, _ = activations(corrupted, False)
    good, out = activations(clean, True)
    target = out[torch.arange(batch), torch.tensor(labels)].mean()
    keys = [("h", 0), ("h", 1), ("m", 0), ("m", 1)]
    grads = dict(zip(keys, torch.autograd.grad(target, [good[k] for k in keys])))
    expected = []
    for kind in ("h", "m"):
        for layer in range(2):
            g, delta = grads[(kind, layer)], good[(kind, layer)].detach() - bad[(kind, layer)]
            if kind == "h":  # [B, T, H * D] -> per head
                expected += (g * delta).unflatten(-1, (4, -1)).sum((0, 1, 3)).tolist()
            else:
                expected.append(float((g * delta).sum()))
    np.testing.assert_allclose(got[:8], expected[:8], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[8:], expected[8:], rtol=1e-4, atol=1e-6)
    # zero ablation: gradient × activation; one feature alone has the same derivative
    zero = MaskedModel(model, MLPBlocks(model), value, clean).mask_gradient()
    assert zero.shape == (2,) and np.isfinite(zero).all() and not np.allclose(zero, got[8:])
    one = MaskedModel(model, MLPBlocks(model, layers=[1]), value, clean).mask_gradient()
    np.testing.assert_allclose(one, zero[1:], rtol=1e-5, atol=1e-7)


def test_mask_gradient_refuses_a_value_without_a_gradient():
    class Correct(compattr.values.Value):
        def prepare(self, model, inputs, batch_size):
            return inputs, None

        def score(self, model, inputs, targets):
            return (model(inputs).logits[:, -1].argmax(-1) == 5).float()

    model = tiny_llama(layers=2, heads=4)
    with pytest.raises(TypeError, match="differentiable value"):
        MaskedModel(model, MLPBlocks(model), Correct(), ids()).mask_gradient()


def test_token_mean_refuses_an_attention_mask_that_does_not_fit():
    """It averaged every row, padding included, where the mask did not match the activation."""
    from compattr.features.patching import token_mean

    x = torch.arange(24.0).view(2, 3, 4)
    attended = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.allclose(token_mean(x, attended, tail=1), x[attended.bool()].mean(0))
    with pytest.raises(ValueError, match="does not match the activation"):
        token_mean(x.view(6, 4), attended, tail=1)


@pytest.mark.parametrize(
    "build, norm, registered",
    [
        ("gemma3", "post_feedforward_layernorm", True),
        ("glm4", "post_mlp_layernorm", True),
        ("glm4", "post_mlp_layernorm", False),
    ],
)
def test_an_mlp_normalised_before_the_residual_sum_is_read_after_its_norm(build, norm, registered, monkeypatch):
    """Gemma 3 (``post_feedforward_layernorm``) and GLM-4 (``post_mlp_layernorm``) normalise
    the MLP's output before adding it to the residual stream; the hook sat before that norm,
    so mean ablation substituted the norm of the mean (0.24 off, on an effect of 0.27) and
    the mask's gradient was about 0 (the norm ignores scale). Found by the registry, or by
    discovery for a model type it lacks. The MLP weights are scaled up to outputs of trained
    size."""
    from compattr._testing import tiny_gemma3
    from compattr.features.architectures import REGISTRY

    if build == "gemma3":
        model = tiny_gemma3(layers=2, heads=4, kv_heads=2, hidden=32, head_dim=12)
    else:
        model = tiny_causal_lm("Glm4", head_dim=8, pad_token_id=0)
    if not registered:
        monkeypatch.delitem(REGISTRY, model.config.model_type)
    layers = model.model.layers
    with torch.no_grad():
        for layer in layers:
            layer.mlp.down_proj.weight.mul_(100)
    reference = torch.randint(6, 60, (3, 5), generator=torch.Generator().manual_seed(1))
    x = torch.randint(6, 60, (2, 5), generator=torch.Generator().manual_seed(2))
    seen = []
    site = getattr(layers[0], norm)
    handle = site.register_forward_hook(lambda m, a, o: seen.append(o.detach()))
    with torch.no_grad():
        model(reference)
    handle.remove()
    mean = seen[0].mean((0, 1))
    with torch.no_grad():
        plain = model(x).logits
        handle = site.register_forward_hook(lambda m, a, o: mean.expand_as(o))
        expected = model(x).logits
        handle.remove()
        with MLPBlocks(model, ablation="mean", reference=reference).masked(np.array([False, True])):
            got = model(x).logits
    assert (expected - plain).abs().max() > 0.1
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # the mask's gradient: through the contribution, as by hand with a scale after the norm
    query = MaskedModel(model, MLPBlocks(model), ClassLogit(), x)
    scales = torch.ones(2, requires_grad=True)
    handles = [
        getattr(layer, norm).register_forward_hook(lambda m, a, o, i=i: o * scales[i]) for i, layer in enumerate(layers)
    ]
    value = ClassLogit()
    inputs, targets = value.prepare(model, x, 64)
    value.reduce(value.score(model, inputs, targets).view(1, -1)).sum().backward()
    for handle in handles:
        handle.remove()
    np.testing.assert_allclose(query.mask_gradient(), scales.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_a_block_without_the_mlp_site_is_refused_with_how_to_register_it(monkeypatch):
    """A discovered family whose blocks hold no ``mlp`` (Llama 4's ``feed_forward``) raised a
    bare AttributeError from deep inside; now a ValueError naming the registration."""
    from compattr.features.architectures import REGISTRY

    model = tiny_llama()
    monkeypatch.delitem(REGISTRY, "llama")
    for layer in model.model.layers:
        layer.feed_forward = layer.mlp
        del layer.mlp
    with pytest.raises(ValueError, match=r"no module 'mlp'.*register_architecture\('llama'"):
        MLPBlocks(model)


def test_kept_components_are_exactly_their_own_outputs_in_bfloat16():
    """Mean and patch ablation wrote a kept output as alt + (out − alt)·1, which bfloat16
    rounds away from out: the all-ones mask moved a tiny Llama's logits by up to 4e-3."""
    model = tiny_llama(layers=3, heads=4, kv_heads=2, hidden=32).to(torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    x, reference, corrupted = (torch.randint(6, 60, (4, 8), generator=g) for _ in range(3))
    with torch.no_grad():
        plain = model(x).logits
    features = [
        MLPBlocks(model, ablation="mean", reference=reference),
        MLPBlocks(model, ablation="patch", corrupted=corrupted),
        AttentionHeads(model, rescale=False, ablation="mean", reference=reference),
        AttentionHeads(model, rescale=False, ablation="patch", corrupted=corrupted),
    ]
    for feats in features:
        with torch.no_grad(), feats.masked(np.ones(feats.n, bool)):
            assert torch.equal(model(x).logits, plain), feats
        with torch.no_grad(), feats.masked(np.zeros(feats.n, bool)):
            assert not torch.equal(model(x).logits, plain), feats
