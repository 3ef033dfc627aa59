"""AttentionHeads on TransformerLens 2.x ``HookedTransformer`` models.

transformer-lens 4.x (the ``lens`` extra next to transformers 5) only ships the
``TransformerBridge``, tested in ``test_heads.py``; ``HookedTransformer`` needs
transformer-lens 2.x, which pins transformers 4 and NumPy 1. ``make test`` also runs the
suite in that second environment (``make test-lens2``, ``requirements/lens2.txt``).
"""

import copy

import numpy as np
import pytest
import torch
from conftest import check_lens_layer_replay, check_lens_values

from compattr._testing import VOCAB, tiny_gpt2
from compattr.features import AttentionHeads
from compattr.query import Query
from compattr.values import ClassLogit

pytest.importorskip("transformer_lens", reason="HookedTransformer needs transformer-lens 2.x: run `make test-lens2`")
try:
    from transformer_lens import HookedTransformer, HookedTransformerConfig
except ImportError:  # transformer-lens 4.x raises on the name
    pytest.skip(
        "this transformer-lens has no HookedTransformer (4.x); `make test-lens2` runs these tests with 2.x",
        allow_module_level=True,
    )

torch.set_num_threads(1)


def hooked_gpt2(layers: int = 3):
    """The tiny random-weight GPT-2 and the same weights as a ``HookedTransformer``."""
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    hf = tiny_gpt2(layers=layers)
    c = hf.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer,
        d_model=c.n_embd,
        d_head=c.n_embd // c.n_head,
        n_heads=c.n_head,
        d_mlp=4 * c.n_embd,
        d_vocab=c.vocab_size,
        n_ctx=c.n_positions,
        act_fn="gelu_new",
        normalization_type="LN",
        eps=c.layer_norm_epsilon,
        original_architecture="GPT2LMHeadModel",
        device="cpu",
    )
    lens = HookedTransformer(cfg)
    lens.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return hf, lens.eval()


def ids(batch=3, seq=7, seed=0):
    return torch.randint(6, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


def test_hook_z_equals_the_hf_hook_per_row():
    hf, lens = hooked_gpt2()
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(lens(x), hf(x).logits, atol=1e-5, rtol=0)  # same model
    hf_heads, lens_heads = AttentionHeads(hf), AttentionHeads(lens)
    assert (lens_heads.n, lens_heads.n_kv_heads, lens_heads.names) == (hf_heads.n, hf_heads.n_kv_heads, hf_heads.names)
    masks = np.random.default_rng(1).random((3, lens_heads.n)) < 0.5
    with torch.no_grad():
        with hf_heads.masked(masks):
            expected = hf(x).logits
        with lens_heads.masked(masks):
            got = lens(x)
        unmasked = lens(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(got, unmasked, atol=1e-3)
    assert not any(hook.fwd_hooks for hook in lens.hook_dict.values())  # hooks removed


@pytest.mark.parametrize("seq", [1, 4, 7])  # 4 = the number of heads
def test_masking_equals_zeroing_w_o_rows(seq):
    _, lens = hooked_gpt2()
    heads = AttentionHeads(lens, rescale=False)
    assert heads.n_heads == 4
    mask = np.random.default_rng(2).random(heads.n) < 0.5
    zeroed = copy.deepcopy(lens)
    with torch.no_grad():
        for i in np.flatnonzero(~mask):
            zeroed.blocks[heads.groups[i]].attn.W_O[i % heads.n_heads] = 0.0  # (H, d_head, d_model)
        x = ids(batch=4, seq=seq)
        with heads.masked(mask):
            got = lens(x)
        torch.testing.assert_close(got, zeroed(x), atol=1e-5, rtol=0)


def test_mean_ablation_replaces_masked_heads_by_their_reference_mean():
    """hook_z is split by head here: the means are per head, whatever the sequence length."""
    _, lens = hooked_gpt2()
    reference = ids(batch=3, seq=4, seed=9)
    heads = AttentionHeads(lens, rescale=False, ablation="mean", reference=reference)
    site, z = lens.hook_dict["blocks.1.attn.hook_z"], []
    capture = lambda t, hook: z.append(t.detach().clone())
    mask = np.ones(heads.n, bool)
    mask[4 + 2] = False  # layer 1, head 2
    try:
        with torch.no_grad():
            site.add_hook(capture)
            lens(reference)
            lens.reset_hooks()
            with heads.masked(mask):
                site.add_hook(capture)  # after the masking hook: sees the masked tensor
                lens(ids(batch=2, seq=4))
    finally:
        lens.reset_hooks()
    ref, masked = z
    expected = ref[:, :, 2].reshape(-1, ref.shape[-1]).mean(0)
    torch.testing.assert_close(masked[:, :, 2], expected.expand_as(masked[:, :, 2]), atol=1e-6, rtol=0)


def test_query_with_layer_replay_equals_full_forwards_and_skips_early_blocks():
    _, lens = hooked_gpt2(layers=4)
    heads = AttentionHeads(lens, layers=[2, 3])
    masks = np.random.default_rng(3).random((9, heads.n)) < 0.5
    x = ids(batch=2)
    full = check_lens_layer_replay(lens, heads, x, masks)
    one_by_one = np.concatenate([Query(lens, heads, ClassLogit(), x, replay=False).evaluate(m[None]) for m in masks])
    np.testing.assert_allclose(full, one_by_one, atol=1e-5)


def test_mlps_and_patching_on_a_hooked_transformer_equal_the_hf_model():
    """hook_mlp_out masking and head patching (split hook_z) on a HookedTransformer give the
    Hugging Face model's outputs under the same masks, per row."""
    from compattr.features import MLPBlocks

    hf, lens = hooked_gpt2()
    clean, corrupted = ids(seed=2), ids(seed=3)
    hf_parts = AttentionHeads(hf, rescale=False, ablation="patch", corrupted=corrupted) + MLPBlocks(hf)
    lens_parts = AttentionHeads(lens, rescale=False, ablation="patch", corrupted=corrupted) + MLPBlocks(lens)
    assert lens_parts.names == hf_parts.names
    masks = np.random.default_rng(4).random((3, hf_parts.n)) < 0.5
    with torch.no_grad():
        with hf_parts.masked(masks):
            expected = hf(clean).logits
        with lens_parts.masked(masks):
            got = lens(clean)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert not torch.allclose(expected, hf(clean).logits, atol=1e-3)


def test_a_tokenizers_mapping_and_sequence_values_give_the_hf_models_outputs():
    """``HookedTransformer.forward`` takes its tokens as ``input``: a mapping of ``input_ids``
    and an ``attention_mask`` (what tokenizers, text features and the sequence values pass)
    crashed on it; it now gives the Hugging Face model's outputs."""
    hf, lens = hooked_gpt2()
    x = ids(batch=3, seq=7)
    inputs = {"input_ids": x, "attention_mask": torch.ones_like(x)}
    inputs["attention_mask"][0, :2] = 0  # left padding: absolute positions must not shift
    check_lens_values(hf, lens, AttentionHeads, inputs, x)
