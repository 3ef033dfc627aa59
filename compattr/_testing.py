"""Tiny random-weight models and a word-level tokenizer, built offline from configs.

Used by the test-suite and the benchmarks; nothing here downloads anything.
"""

from __future__ import annotations

import torch

VOCAB = 64
SPECIAL = ["[UNK]", "[PAD]", "[MASK]", "[CLS]", "[SEP]", "[BOS]"]
#: The words ``w0`` .. ``w{WORDS - 1}`` of :func:`word_tokenizer`; any other is ``[UNK]``.
WORDS = VOCAB - len(SPECIAL) - 3


def _seeded(build, seed: int):
    torch.manual_seed(seed)
    return build().eval()


def tiny_causal_lm(family: str, seed: int = 0, config_family: str | None = None, **config):
    """A causal LM of the transformers family ``family`` (``"Mistral"`` builds
    ``MistralForCausalLM`` from ``MistralConfig``; ``config_family`` names another
    configuration class, ``"Gemma3nText"`` for ``"Gemma3n"``): 2 layers, 4 query heads on 2
    key/value heads, hidden size 32, with ``config``'s entries in place of these or added (a
    sliding window, a head size)."""
    import transformers

    settings = {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        **config,
    }
    configuration = getattr(transformers, f"{config_family or family}Config")(**settings)
    return _seeded(lambda: getattr(transformers, f"{family}ForCausalLM")(configuration), seed)


def tiny_llama(
    layers: int = 3,
    heads: int = 4,
    kv_heads: int = 2,
    hidden: int = 32,
    seed: int = 0,
    vocab_size: int = VOCAB,
    head_dim: int | None = None,
):
    """``LlamaForCausalLM`` with grouped-query attention (``heads`` query, ``kv_heads`` KV heads);
    ``head_dim`` (default ``hidden // heads``) may make ``heads * head_dim`` differ from ``hidden``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        head_dim=head_dim or hidden // heads,
    )
    return _seeded(lambda: LlamaForCausalLM(config), seed)


def tiny_gpt2(layers: int = 2, heads: int = 4, hidden: int = 32, seed: int = 0):
    """``GPT2LMHeadModel`` (Conv1D projections)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=64,
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        bos_token_id=5,
        eos_token_id=5,
    )
    return _seeded(lambda: GPT2LMHeadModel(config), seed)


def tiny_bert(layers: int = 2, heads: int = 4, hidden: int = 32, labels: int = 3, seed: int = 0):
    """``BertForSequenceClassification`` with ``labels`` classes."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        num_labels=labels,  # type: ignore[call-arg]  # a PretrainedConfig keyword BertConfig's stub omits
        pad_token_id=1,
        initializer_range=0.2,
    )
    return _seeded(lambda: BertForSequenceClassification(config), seed)


def _gemma3_text_config(layers: int, heads: int, kv_heads: int, hidden: int, head_dim: int):
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        max_position_embeddings=64,
        sliding_window=4,
    )


def tiny_gemma3(
    layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 32, head_dim: int = 12, seed: int = 0
):
    """``Gemma3ForCausalLM`` (text only) whose ``heads * head_dim`` (48) differs from ``hidden``."""
    from transformers import Gemma3ForCausalLM

    config = _gemma3_text_config(layers, heads, kv_heads, hidden, head_dim)
    return _seeded(lambda: Gemma3ForCausalLM(config), seed)


def tiny_gemma3_multimodal(
    layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 32, head_dim: int = 12, seed: int = 0
):
    """``Gemma3ForConditionalGeneration`` (a vision tower beside the language model, as in
    Gemma 3 4B and larger); its top-level config has no ``num_attention_heads``."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig

    vision = SiglipVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=8,
    )
    config = Gemma3Config(
        text_config=_gemma3_text_config(layers, heads, kv_heads, hidden, head_dim),
        vision_config=vision,
        mm_tokens_per_image=4,
    )
    return _seeded(lambda: Gemma3ForConditionalGeneration(config), seed)


def tiny_falcon(layers: int = 2, heads: int = 4, hidden: int = 32, seed: int = 0):
    """``FalconForCausalLM`` with multi-query attention (one key/value head per layer)."""
    from transformers import FalconConfig, FalconForCausalLM

    config = FalconConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        multi_query=True,
        new_decoder_architecture=False,
        parallel_attn=True,
        bias=False,
    )
    return _seeded(lambda: FalconForCausalLM(config), seed)


def tiny_opt(layers: int = 2, heads: int = 4, hidden: int = 32, seed: int = 0):
    """``OPTForCausalLM``, whose MLP output site (``fc2``) sees the tokens flattened,
    ``[batch·tokens, hidden]``."""
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        ffn_dim=2 * hidden,
        word_embed_proj_dim=hidden,
        max_position_embeddings=64,
        pad_token_id=1,
    )
    return _seeded(lambda: OPTForCausalLM(config), seed)


def word_tokenizer():
    """A fast word-level tokenizer: the words ``w0`` .. ``w54`` (:data:`WORDS`), punctuation ``. , !``,
    special tokens ``[UNK] [PAD] [MASK] [CLS] [SEP] [BOS]``; it returns offsets."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = SPECIAL + [".", ",", "!"] + [f"w{i}" for i in range(WORDS)]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        bos_token="[BOS]",
    )
