"""AttentionHeads on tiny random-weight Llama (GQA), GPT-2 and BERT models built from configs."""

import copy

import numpy as np
import pytest
import torch
from conftest import check_lens_layer_replay, check_lens_values
from torch import nn

from compattr._testing import (
    tiny_bert,
    tiny_falcon,
    tiny_gemma3,
    tiny_gemma3_multimodal,
    tiny_gpt2,
    tiny_llama,
    word_tokenizer,
)
from compattr.features import Architecture, AttentionHeads, register_architecture
from compattr.features.architectures import REGISTRY
from compattr.query import Query
from compattr.values import ClassLogit

torch.set_num_threads(1)

BUILDERS = {"llama": tiny_llama, "gpt2": tiny_gpt2, "bert": tiny_bert}


def out_proj(model, layer):
    """The attention output projection of ``layer``, spelled out per family (independently of
    compattr's architecture registry)."""
    model_type = model.config.model_type
    if model_type in ("llama", "gemma3_text"):
        return model.model.layers[layer].self_attn.o_proj
    if model_type == "gemma3":  # multimodal wrapper
        return model.model.language_model.layers[layer].self_attn.o_proj
    if model_type == "gpt2":
        return model.transformer.h[layer].attn.c_proj
    if model_type == "falcon":
        return model.transformer.h[layer].self_attention.dense
    return model.bert.encoder.layer[layer].attention.output.dense


def scale_head_inputs(model, factors):
    """A copy of ``model`` whose output projections' weights multiply head h of layer l by
    ``factors[l][h]``: the reference for hook masking (zero = masked)."""
    model = copy.deepcopy(model)
    H = len(factors[0])
    with torch.no_grad():
        for layer, per_head in enumerate(factors):
            proj = out_proj(model, layer)
            conv1d = model.config.model_type == "gpt2"  # Conv1D: weight is (in, out)
            d_in = proj.weight.shape[0] if conv1d else proj.weight.shape[1]
            D = d_in // H
            for h, f in enumerate(per_head):
                if conv1d:
                    proj.weight[h * D : (h + 1) * D, :] *= f
                else:
                    proj.weight[:, h * D : (h + 1) * D] *= f
    return model


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture(params=sorted(BUILDERS))
def model(request):
    return BUILDERS[request.param]()


def ids(batch=3, seq=6, seed=0):
    return torch.randint(6, 60, (batch, seq), generator=torch.Generator().manual_seed(seed))


def test_masking_equals_zeroing_weight_columns(model):
    heads = AttentionHeads(model, rescale=False)
    mask = np.random.default_rng(1).random(heads.n) < 0.5
    mask[0], mask[1] = True, False
    with heads.masked(mask):
        hooked = logits(model, ids())
    reference = logits(scale_head_inputs(model, mask.reshape(-1, heads.n_heads).astype(float)), ids())
    assert torch.allclose(hooked, reference, atol=1e-5)
    assert not torch.allclose(hooked, logits(model, ids()), atol=1e-4)


SURGERY_FAMILIES = {
    "llama": tiny_llama,
    "llama, heads * head_dim != hidden": lambda: tiny_llama(head_dim=12),
    "gpt2": tiny_gpt2,
    "bert": tiny_bert,
    "gemma3": tiny_gemma3,
    "gemma3 multimodal": tiny_gemma3_multimodal,
    "falcon multi-query": tiny_falcon,
}


@pytest.mark.parametrize("family", sorted(SURGERY_FAMILIES))
@pytest.mark.parametrize("seq", [1, 4, 5])  # 4 = the number of heads: the length that once masked tokens
@pytest.mark.parametrize("per_row", [False, True])
def test_masking_equals_weight_surgery_at_every_sequence_length(family, seq, per_row):
    """Hooked masks equal zeroing the output projection's input columns of the masked heads,
    for sequences as long as the head count (and the batch as large), shared and per-row."""
    model = SURGERY_FAMILIES[family]()
    heads = AttentionHeads(model, rescale=False)
    assert heads.n_heads == 4
    batch = 4
    x = ids(batch=batch, seq=seq, seed=seq)
    rng = np.random.default_rng(seq + 10 * per_row)
    masks = rng.random((batch if per_row else 1, heads.n)) < 0.5
    masks[:, 0], masks[:, 1] = True, False
    with heads.masked(masks if per_row else masks[0]):
        hooked = logits(model, x)
    for b in range(batch):
        row = masks[b if per_row else 0].reshape(len(heads.layers), 4).astype(float)
        reference = logits(scale_head_inputs(model, row), x[b : b + 1])[0]
        assert torch.allclose(hooked[b], reference, atol=1e-5), (family, seq, b)
    assert not torch.allclose(hooked, logits(model, x), atol=1e-4)


TINY = dict(
    vocab_size=64,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
GQA = dict(num_key_value_heads=2)  # families whose default key/value head count exceeds 4
TINY_EXTRA = {
    **{family: GQA for family in ("gemma", "mistral", "mixtral", "qwen2", "qwen3")},
    "distilbert": dict(dim=32, n_heads=4, hidden_dim=64, n_layers=2),
    "opt": dict(ffn_dim=64, word_embed_proj_dim=32),
    "mixtral": dict(num_local_experts=2, num_experts_per_tok=1, **GQA),
    "falcon": dict(multi_query=True, new_decoder_architecture=False),
}


@pytest.mark.parametrize("model_type", sorted(REGISTRY))
def test_every_registered_family_masks_heads_like_weight_surgery_when_t_equals_h(model_type):
    """Each registered family, as a tiny base model: masks at a sequence as long as the head
    count equal zeroing the input columns of the hooked projection's weight."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.for_model(model_type, **TINY, **TINY_EXTRA.get(model_type, {}))
    torch.manual_seed(0)
    model = AutoModel.from_config(config).eval()
    heads = AttentionHeads(model, rescale=False)
    H = heads.n_heads
    mask = np.random.default_rng(0).random(heads.n) < 0.5
    mask[0], mask[1] = True, False
    x = ids(batch=H, seq=H)
    with torch.no_grad(), heads.masked(mask):
        hooked = model(x).last_hidden_state
    surgery = copy.deepcopy(model)
    sites = AttentionHeads(surgery)._sites
    with torch.no_grad():
        for pos, site in enumerate(sites):
            weight = site.weight  # nn.Linear: (out, in); GPT-2's Conv1D: (in, out)
            columns = weight.T if type(site).__name__ == "Conv1D" else weight
            D = columns.shape[1] // H
            for h in np.flatnonzero(~mask[pos * H : (pos + 1) * H]):
                columns[:, h * D : (h + 1) * D] = 0
        reference = surgery(x).last_hidden_state
        plain = model(x).last_hidden_state
    assert torch.allclose(hooked, reference, atol=1e-5)
    assert not torch.allclose(hooked, plain, atol=1e-4)


def test_kv_heads_of_multi_query_and_multimodal_models():
    falcon = AttentionHeads(tiny_falcon())
    assert (falcon.n_heads, falcon.n_kv_heads) == (4, 1) and set(falcon.kv_groups.tolist()) == {0, 1}
    gemma = AttentionHeads(tiny_gemma3_multimodal())
    assert (gemma.n, gemma.n_heads, gemma.n_kv_heads) == (8, 4, 2)
    assert gemma._sites[0] is gemma.model.model.language_model.layers[0].self_attn.o_proj


def test_a_tensor_in_another_layout_than_the_site_is_refused():
    """The layout is fixed by the hook site; a tensor that does not fit it is an error, never
    reinterpreted by its sizes."""
    heads = AttentionHeads(tiny_llama(layers=1), rescale=False)
    with heads.masked(np.ones(heads.n, bool)), pytest.raises(RuntimeError, match="layout"):
        heads._apply(0, torch.zeros(2, 4, 4, 8))  # split by head, at a flat site


def test_rescaling_matches_its_definition(model):
    heads = AttentionHeads(model, rescale=True)
    H = heads.n_heads
    mask = np.random.default_rng(2).random(heads.n) < 0.5
    mask[:H] = False  # a layer with every head masked stays zero
    mask[H] = True
    factors = [[float(keep) * H / max(row.sum(), 1) for keep in row] for row in mask.reshape(-1, H)]
    with heads.masked(mask):
        hooked = logits(model, ids())
    assert torch.allclose(hooked, logits(scale_head_inputs(model, factors), ids()), atol=1e-5)


def test_per_row_masks_equal_one_mask_per_forward(model):
    heads = AttentionHeads(model)
    x = ids(batch=4)
    masks = torch.rand(4, heads.n, generator=torch.Generator().manual_seed(3)) < 0.5
    with heads.masked(masks):
        batched = logits(model, x)
    for b in range(4):
        with heads.masked(masks[b]):
            assert torch.allclose(batched[b], logits(model, x[b : b + 1])[0], atol=1e-5)


def test_all_kept_with_rescaling_is_the_unhooked_model(model):
    heads = AttentionHeads(model, rescale=True)
    with heads.masked(np.ones(heads.n, bool)):
        assert torch.allclose(logits(model, ids()), logits(copy.deepcopy(model), ids()), atol=1e-6)


def test_features_are_layer_major_with_kv_groups():
    model = tiny_llama(layers=3, heads=4, kv_heads=2)
    heads = AttentionHeads(model, layers=[2, 0])
    assert heads.layers == [0, 2] and heads.n == 8 and (heads.n_heads, heads.n_kv_heads) == (4, 2)
    assert heads.names == [f"L{l}.H{h}" for l in (0, 2) for h in range(4)]
    assert heads.groups.tolist() == [0] * 4 + [2] * 4
    assert heads.kv_groups.tolist() == [0, 0, 1, 1, 4, 4, 5, 5]


def test_a_layer_subset_masks_only_those_layers():
    model = tiny_llama(layers=3)
    heads = AttentionHeads(model, layers=[1], rescale=False)
    mask = np.array([False, True, True, False])
    with heads.masked(mask):
        hooked = logits(model, ids())
    factors = [[1.0] * 4, mask.astype(float).tolist(), [1.0] * 4]
    assert torch.allclose(hooked, logits(scale_head_inputs(model, factors), ids()), atol=1e-5)


def test_mean_ablation_replaces_masked_heads_by_their_reference_mean():
    model = tiny_llama(layers=2)
    reference = {"input_ids": ids(batch=5, seed=7), "attention_mask": torch.ones(5, 6, dtype=torch.long)}
    reference["attention_mask"][0, 4:] = 0
    heads = AttentionHeads(model, rescale=False, ablation="mean", reference=reference)
    proj = out_proj(model, 1)
    seen = []
    handle = proj.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    try:
        logits(model, reference["input_ids"])
        mask = np.ones(heads.n, bool)
        mask[4 + 1] = False  # layer 1, head 1
        with heads.masked(mask):
            logits(model, ids())
        logits(model, ids())
    finally:
        handle.remove()
    ref, masked, plain = (s.unflatten(-1, (4, -1)) for s in seen)
    keep = reference["attention_mask"].bool()
    assert torch.allclose(masked[:, :, 1], ref[keep][:, 1].mean(0).expand_as(masked[:, :, 1]), atol=1e-6)
    assert torch.allclose(masked[:, :, [0, 2, 3]], plain[:, :, [0, 2, 3]])


def test_mean_ablation_leaves_out_the_padding_of_a_tokenizers_output():
    """A tokenizer returns a BatchEncoding, a mapping but not a dict: its attention mask
    keeps the padding out of the means as a dict's does."""
    model, tokenizer = tiny_llama(layers=2), word_tokenizer()
    encoded = tokenizer(["w1 w2 w3 w4 w5 w6", "w7"], padding=True, return_tensors="pt")
    assert not isinstance(encoded, dict) and not encoded["attention_mask"].all()
    mask = np.ones(8, bool)
    mask[[1, 6]] = False

    def masked_logits(reference):
        with AttentionHeads(model, rescale=False, ablation="mean", reference=reference).masked(mask):
            return logits(model, ids())

    as_encoded = masked_logits(encoded)
    assert torch.allclose(as_encoded, masked_logits(dict(encoded)))
    assert not torch.allclose(as_encoded, masked_logits({"input_ids": encoded["input_ids"]}), atol=1e-4)


def test_hooks_are_removed_also_on_exceptions():
    model = tiny_gpt2()
    heads = AttentionHeads(model)
    before = logits(model, ids())
    with pytest.raises(KeyError), heads.masked(np.zeros(heads.n, bool)):
        raise KeyError("boom")
    assert all(not out_proj(model, l)._forward_pre_hooks for l in range(2))
    assert torch.equal(logits(model, ids()), before)
    with heads.masked(np.zeros(heads.n, bool)):  # usable again
        assert not torch.allclose(logits(model, ids()), before)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layers": [0, 5]}, r"layer\(s\) \[5\] out of range: the model has layers 0..1"),
        ({"layers": [-1]}, "out of range"),
        ({"layers": []}, "empty"),
        ({"layers": [1.7]}, r"layers must be integers \(layer indices\), got \[1.7\]"),
        ({"layers": ["1"]}, "layers must be integers"),
        ({"layers": [True]}, "layers must be integers"),
        ({"ablation": "noise"}, "ablation must be one of"),
        ({"ablation": "mean", "rescale": False}, "needs reference inputs"),
        ({"ablation": "mean", "reference": torch.zeros(1, 2, dtype=torch.long)}, "rescale=False"),
    ],
)
def test_bad_arguments_get_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttentionHeads(tiny_gpt2(), **kwargs)


def test_bad_masks_get_clear_errors():
    model = tiny_gpt2()
    heads = AttentionHeads(model)
    with pytest.raises(ValueError, match="9 columns but there are n=8"), heads.masked(np.ones(heads.n + 1, bool)):
        pass
    with (
        pytest.raises(ValueError, match=r"shape \(n,\) or \(B, n\) with n=8, got \(2, 9\)"),
        heads.masked(torch.ones(2, heads.n + 1, dtype=torch.bool)),
    ):
        pass
    with pytest.raises(ValueError, match="binary"), heads.masked(np.full(heads.n, 0.5)):
        pass
    with (
        pytest.raises(ValueError, match="2 rows but the model runs a batch of 3"),
        heads.masked(np.ones((2, heads.n), bool)),
    ):
        logits(model, ids(batch=3))
    with (
        heads.masked(np.ones(heads.n, bool)),
        pytest.raises(RuntimeError, match="do not nest"),
        heads.masked(np.ones(heads.n, bool)),
    ):
        pass


class _Mystery(nn.Module):
    """A transformer-like model of an unregistered family."""

    def __init__(self, projection_name="out_proj"):
        super().__init__()
        self.config = type("Config", (), {"model_type": "mystery", "num_attention_heads": 2, "num_hidden_layers": 2})()
        self.embed = nn.Embedding(10, 8)
        self.blocks = nn.ModuleList()
        for _ in range(2):
            block = nn.Module()
            block.attn = nn.Module()
            block.attn.add_module(projection_name, nn.Linear(8, 8))
            self.blocks.append(block)
        self.projection_name = projection_name

    def forward(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = h + getattr(block.attn, self.projection_name)(h)
        return h


def test_unknown_architectures_are_discovered_or_refused():
    model = _Mystery()
    heads = AttentionHeads(model, rescale=False)
    x = torch.tensor([[1, 2, 3]])
    with heads.masked(np.array([1, 0, 1, 1], bool)):
        hooked = model(x)
    with torch.no_grad():
        model.blocks[0].attn.out_proj.weight[:, 4:] = 0
    assert torch.allclose(hooked, model(x))
    with pytest.raises(ValueError, match="Unknown architecture.*register_architecture"):
        AttentionHeads(_Mystery("mixer"))


def test_an_encoder_decoder_is_refused_until_its_stack_is_registered():
    """Discovery took the first stack of blocks it met: an encoder-decoder's encoder, silently."""
    from transformers import BartConfig, BartForConditionalGeneration

    sizes = dict(encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2)
    config = BartConfig(vocab_size=50, d_model=16, encoder_ffn_dim=16, decoder_ffn_dim=16, **sizes)
    model = BartForConditionalGeneration(config).eval()
    with pytest.raises(ValueError, match="2 stacks.*encoder.layers.*decoder.layers.*register_architecture"):
        AttentionHeads(model)
    try:
        register_architecture("bart", Architecture("decoder.layers", "self_attn.out_proj", "fc2"))
        heads = AttentionHeads(model)
        assert heads._sites[0] is model.model.decoder.layers[0].self_attn.out_proj
    finally:
        REGISTRY.pop("bart")


def test_registered_architectures_are_used():
    try:
        register_architecture("mystery", Architecture("blocks", "attn.mixer"))
        heads = AttentionHeads(_Mystery("mixer"))
        assert heads._sites[1] is heads.model.blocks[1].attn.mixer
    finally:
        REGISTRY.pop("mystery")


def test_layer_replay_equals_the_full_forward_and_skips_early_blocks():
    model = tiny_llama(layers=4)
    heads = AttentionHeads(model, layers=[2, 3])
    replay = heads.layer_replay()
    x = ids(batch=2)
    masks = torch.rand(6, heads.n, generator=torch.Generator().manual_seed(4)) < 0.5
    with heads.masked(masks):
        full = logits(model, x.repeat(3, 1))
    captured = replay.capture(lambda: model(x))
    calls = []
    handle = model.model.layers[0].self_attn.register_forward_hook(lambda *a: calls.append(1))
    try:
        with replay.replaying(captured), heads.masked(masks):
            replayed = logits(model, x.repeat(3, 1))
    finally:
        handle.remove()
    assert torch.allclose(full, replayed, atol=1e-6) and not calls
    assert model.model.layers[0].forward.__func__ is type(model.model.layers[0]).forward
    assert AttentionHeads(model, layers=[0, 3]).layer_replay() is None


def test_transformerlens_hook_z_equals_the_hf_hook(tmp_path):
    bridges = pytest.importorskip("transformer_lens.model_bridge", reason="needs the 'lens' extra (transformer-lens 4)")
    TransformerBridge = bridges.TransformerBridge
    from transformers import AutoTokenizer

    word_tokenizer().save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    for build in (tiny_gpt2, tiny_llama):
        model = build()
        hf = copy.deepcopy(model)
        masks = np.random.default_rng(5).random((3, AttentionHeads(hf).n)) < 0.5
        hf_heads = AttentionHeads(hf)
        bridge = TransformerBridge.boot_transformers("tiny", hf_model=model, tokenizer=tokenizer)
        lens_heads = AttentionHeads(bridge)
        assert (lens_heads.n, lens_heads.n_kv_heads) == (hf_heads.n, hf_heads.n_kv_heads)
        for seq in (1, hf_heads.n_heads, 6):  # hook_z arrives flattened: T = H must not fool it
            x = ids(batch=3, seq=seq)
            with hf_heads.masked(masks):
                expected = logits(hf, x)
            with lens_heads.masked(masks), torch.no_grad():
                got = bridge(x)
            assert torch.allclose(got, expected, atol=1e-5), seq
            assert not torch.allclose(got, logits(hf, x), atol=1e-4)
        x = ids(batch=3)
        through_query = Query(bridge, lens_heads, ClassLogit(), x).evaluate(masks[:2])
        assert np.allclose(through_query, Query(hf, hf_heads, ClassLogit(), x).evaluate(masks[:2]), atol=1e-5)


def test_transformerlens_takes_a_tokenizers_mapping_words_and_sequence_values(tmp_path):
    """A TransformerLens model's forward takes its tokens as ``input``: a mapping of
    ``input_ids`` and a left-padded ``attention_mask``, text features and the sequence values
    (which pass a mapping) crashed on it; they give the Hugging Face model's outputs."""
    bridges = pytest.importorskip("transformer_lens.model_bridge", reason="needs the 'lens' extra (transformer-lens 4)")
    from transformers import AutoTokenizer

    from compattr.features import Words
    from compattr.values import LogLikelihood

    word_tokenizer().save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    model = tiny_gpt2()  # absolute positions: left padding must not shift them
    hf = copy.deepcopy(model)
    bridge = bridges.TransformerBridge.boot_transformers("tiny", hf_model=model, tokenizer=tokenizer)
    x = ids(batch=3, seq=7)
    padded = {"input_ids": x, "attention_mask": torch.ones_like(x)}
    padded["attention_mask"][0, :2] = 0
    check_lens_values(hf, bridge, AttentionHeads, padded, x)
    from compattr.features.base import call_model

    with torch.no_grad():  # a wrapper's forward takes anything: the bridge's is read
        torch.testing.assert_close(call_model(torch.nn.DataParallel(bridge), padded), call_model(bridge, padded))
    words = lambda m: Query(m, Words(tokenizer, "w1 w2 w3 w4 w5", prefix="[BOS] w20 "), LogLikelihood(max_new_tokens=3))
    word_masks = np.random.default_rng(2).random((4, 5)) < 0.5
    np.testing.assert_allclose(words(bridge).evaluate(word_masks), words(hf).evaluate(word_masks), atol=1e-5)


def test_transformerlens_layer_replay_equals_the_full_forward(tmp_path):
    """Query with layer replay on a TransformerBridge gives the outputs of full forwards and
    runs the blocks before the first masked layer once per example batch, not per mask batch."""
    bridges = pytest.importorskip("transformer_lens.model_bridge", reason="needs the 'lens' extra (transformer-lens 4)")
    TransformerBridge = bridges.TransformerBridge
    from transformers import AutoTokenizer

    word_tokenizer().save_pretrained(tmp_path)
    bridge = TransformerBridge.boot_transformers(
        "tiny", hf_model=tiny_llama(layers=4), tokenizer=AutoTokenizer.from_pretrained(tmp_path)
    )
    heads = AttentionHeads(bridge, layers=[2, 3])
    masks = np.random.default_rng(6).random((9, heads.n)) < 0.5
    check_lens_layer_replay(bridge, heads, ids(batch=2), masks)


def test_zero_ablation_warns_where_value_biases_were_folded_into_output_biases(tmp_path):
    """TransformerLens' weight processing moves each head's b_V·W_O into the layer's b_O:
    zeroing the head's z then leaves that term (5e-3 off on an effect of 5e-3). Zero
    ablation warns on such a model; mean ablation (exact either way) and a model whose value
    biases are in place do not."""
    import warnings

    bridges = pytest.importorskip("transformer_lens.model_bridge", reason="needs the 'lens' extra (transformer-lens 4)")
    from transformers import AutoTokenizer

    word_tokenizer().save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    hf = tiny_gpt2(layers=2, heads=4, hidden=32)
    with torch.no_grad():  # trained GPT-2s have biases (random initialisation leaves them 0)
        for name, parameter in hf.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.5)
    in_place = bridges.TransformerBridge.boot_transformers("tiny", hf_model=copy.deepcopy(hf), tokenizer=tokenizer)
    folded = bridges.TransformerBridge.boot_transformers("tiny", hf_model=copy.deepcopy(hf), tokenizer=tokenizer)
    folded.enable_compatibility_mode(disable_warnings=True)
    with pytest.warns(UserWarning, match="fold_value_biases=False"):
        AttentionHeads(folded, rescale=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AttentionHeads(in_place, rescale=False)
        AttentionHeads(folded, ablation="mean", reference=ids(batch=2), rescale=False)
        heads = AttentionHeads(in_place, rescale=False)
    # weights processed after the features were built: masking warns (once), as building does
    in_place.enable_compatibility_mode(disable_warnings=True)
    with pytest.warns(UserWarning, match="fold_value_biases=False"), heads.masked(np.ones(heads.n, bool)):
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with heads.masked(np.ones(heads.n, bool)):
            pass


# --------------------------------------------------------------------------- patching
def patched_by_hand(model, clean, corrupted, masks):
    """Logits of ``clean`` with the masked heads' inputs to the output projection replaced by
    those of the same row of ``corrupted`` (activation surgery, written independently)."""
    layers = model.config.num_hidden_layers if hasattr(model.config, "num_hidden_layers") else model.config.n_layer
    H = model.config.num_attention_heads if hasattr(model.config, "num_attention_heads") else model.config.n_head
    seen = {}
    handles = [
        out_proj(model, l).register_forward_pre_hook(lambda m, a, l=l: seen.__setitem__(l, a[0].detach().clone()))
        for l in range(layers)
    ]
    try:
        logits(model, corrupted)
    finally:
        for h in handles:
            h.remove()
    keep = torch.as_tensor(np.atleast_2d(masks)).reshape(-1, layers, H)

    def swap(l, module, args):
        x = args[0].clone()
        D = x.shape[-1] // H
        for b in range(x.shape[0]):
            row = keep[b if len(keep) > 1 else 0, l]
            for h in np.flatnonzero(~row.numpy()):
                x[b, :, h * D : (h + 1) * D] = seen[l][b, :, h * D : (h + 1) * D]
        return (x, *args[1:])

    handles = [out_proj(model, l).register_forward_pre_hook(lambda m, a, l=l: swap(l, m, a)) for l in range(layers)]
    try:
        return logits(model, clean)
    finally:
        for h in handles:
            h.remove()


def test_patching_equals_activation_surgery_per_row(model):
    clean, corrupted = ids(batch=3, seed=1), ids(batch=3, seed=2)
    heads = AttentionHeads(model, rescale=False, ablation="patch", corrupted=corrupted)
    masks = np.random.default_rng(3).random((3, heads.n)) < 0.5
    with heads.masked(masks):
        got = logits(model, clean)
    assert torch.allclose(got, patched_by_hand(model, clean, corrupted, masks), atol=1e-5)
    assert not torch.allclose(got, logits(model, clean), atol=1e-4)  # the patch changes the output
    for b in range(3):  # one row at a time, told which example it is
        with heads.masked(masks[b], examples=[b]):
            alone = logits(model, clean[b : b + 1])
        assert torch.allclose(alone, got[b : b + 1], atol=1e-5)
    with heads.masked(np.ones(heads.n, bool)):  # nothing masked: the clean model
        assert torch.allclose(logits(model, clean), logits(model, clean), atol=1e-6)
    with heads.masked(np.zeros(heads.n, bool)):  # everything masked: the corrupted run's heads
        assert torch.allclose(
            logits(model, clean), patched_by_hand(model, clean, corrupted, np.zeros(heads.n, bool)), atol=1e-5
        )


def test_patching_through_a_masked_model_tells_each_row_its_example():
    """MaskedModel tiles masks x examples into batch rows in chunks; every batch size gives the
    outputs of masking one mask at a time on all examples."""
    model = tiny_llama(layers=2)
    clean, corrupted = ids(batch=5, seed=4), ids(batch=5, seed=5)
    heads = AttentionHeads(model, rescale=False, ablation="patch", corrupted=corrupted)
    masks = np.random.default_rng(6).random((4, heads.n)) < 0.5
    value = ClassLogit()
    x, targets = value.prepare(model, clean, 8)
    expected = []
    for m in masks:
        with heads.masked(m), torch.no_grad():
            expected.append(float(value.score(model, x, targets).mean()))
    for batch_size in (1, 3, 7, 64):  # examples split across forward passes, masks tiled
        got = Query(model, heads, value, clean, batch_size=batch_size, replay=False).evaluate(masks)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    got = Query(
        model, AttentionHeads(model, layers=[1], rescale=False, ablation="patch", corrupted=corrupted), value, clean
    ).evaluate(masks[:, 4:])  # layer replay of layer 0
    only_last = AttentionHeads(model, layers=[1], rescale=False, ablation="patch", corrupted=corrupted)
    with only_last.masked(masks[0, 4:]), torch.no_grad():
        first = float(value.score(model, x, targets).mean())
    assert got[0] == pytest.approx(first, abs=1e-5)


def test_patching_refuses_what_it_cannot_do():
    model = tiny_llama(layers=2)
    corrupted = ids(batch=3)
    with pytest.raises(ValueError, match="needs corrupted"):
        AttentionHeads(model, rescale=False, ablation="patch")
    with pytest.raises(ValueError, match="needs corrupted"):
        AttentionHeads(model, rescale=False, corrupted=corrupted)
    with pytest.raises(ValueError, match="rescale=False"):
        AttentionHeads(model, ablation="patch", corrupted=corrupted)
    heads = AttentionHeads(model, rescale=False, ablation="patch", corrupted=corrupted)
    with pytest.raises(ValueError, match="pass examples="), heads.masked(np.ones(heads.n, bool)):
        logits(model, ids(batch=4))
    with pytest.raises(ValueError, match="token positions as given"), heads.masked(np.ones(heads.n, bool)):
        logits(model, ids(batch=3, seq=9))
    assert (
        heads.fingerprint()
        != AttentionHeads(model, rescale=False, ablation="patch", corrupted=ids(batch=3, seed=9)).fingerprint()
    )


def test_transformerlens_patching_equals_the_hf_patching(tmp_path):
    bridges = pytest.importorskip("transformer_lens.model_bridge", reason="needs the 'lens' extra (transformer-lens 4)")
    from transformers import AutoTokenizer

    word_tokenizer().save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    model = tiny_llama()
    hf = copy.deepcopy(model)
    clean, corrupted = ids(batch=3, seed=10), ids(batch=3, seed=11)
    hf_heads = AttentionHeads(hf, rescale=False, ablation="patch", corrupted=corrupted)
    bridge = bridges.TransformerBridge.boot_transformers("tiny", hf_model=model, tokenizer=tokenizer)
    lens_heads = AttentionHeads(bridge, rescale=False, ablation="patch", corrupted=corrupted)
    masks = np.random.default_rng(12).random((3, hf_heads.n)) < 0.5
    with hf_heads.masked(masks):
        expected = logits(hf, clean)
    with lens_heads.masked(masks), torch.no_grad():
        got = bridge(clean)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(expected, patched_by_hand(hf, clean, corrupted, masks), atol=1e-5)
