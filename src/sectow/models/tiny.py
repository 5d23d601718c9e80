"""The embedded default policy: a tiny, randomly initialised Qwen2.5-VL built locally from a config,
with a byte-level BPE tokenizer trained on the miniature's own text. Saved with save_pretrained so it
is loaded through exactly the path a real checkpoint takes. The same builder makes a random model of any
Qwen2.5-VL architecture for benchmarks/gpu_check.py."""

from __future__ import annotations

import copy
import json
import shutil
from importlib import resources
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from sectow.models.processor import ImageOnlyQwen2_5_VLProcessor

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
IMAGE_MIN_PIXELS = 56 * 56  # 4 image tokens
IMAGE_MAX_PIXELS = 112 * 112  # 16 image tokens


def chat_template() -> str:
    """Qwen2.5-VL's chat template as TRL ships it, without the default system prompt (it would cost
    the tiny model 20 tokens per sample for nothing)."""
    template = resources.files("trl").joinpath("chat_templates/qwen2_5_vl.jinja").read_text()
    return template.replace("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", "")


def build_tokenizer(texts: list[str], vocab_size: int = 2048, pad_to: int | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on `texts`. `pad_to` fills the vocabulary up to that size with filler
    tokens that no merge produces: encoding is unchanged, but every id of a model with that vocab_size
    decodes (a random model samples all of them, and vLLM expects the tokenizer to cover them)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    if pad_to is not None and pad_to > tokenizer.get_vocab_size():
        state = json.loads(tokenizer.to_str())
        vocab = state["model"]["vocab"]
        vocab.update({f"<filler{i}>": i for i in range(len(vocab), pad_to)})
        tokenizer = Tokenizer.from_str(json.dumps(state))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   padding_side="left", chat_template=chat_template())


def tiny_config(vocab_size: int, hidden_size: int = 128, layers: int = 2) -> Qwen2_5_VLConfig:
    """The embedded default's architecture (about 0.6M parameters at the defaults)."""
    head_dim = 32
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=hidden_size * 2,
            num_hidden_layers=layers, num_attention_heads=hidden_size // head_dim, num_key_value_heads=2,
            head_dim=head_dim, max_position_embeddings=1024, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
            bos_token_id=None, eos_token_id=None,  # set from the tokenizer by build_tiny_model
        ),
        vision_config=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=hidden_size,
                           fullatt_block_indexes=[1], window_size=112),
    )


def build_tiny_model(folder: Path, texts: list[str], seed: int, hidden_size: int = 128, layers: int = 2,
                     config: Qwen2_5_VLConfig | None = None, image_max_pixels: int = IMAGE_MAX_PIXELS) -> Path:
    """Build and save a randomly initialised Qwen2.5-VL into `folder`: the tiny default, or the
    architecture `config` gives (its vocab_size kept, its special-token ids replaced by this tokenizer's).
    Weights take torch's default dtype and device, so a caller can build a big one in bf16 on a GPU."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if config is None:
        tokenizer = build_tokenizer(texts)
        config = tiny_config(len(tokenizer), hidden_size, layers)
    else:
        config = copy.deepcopy(config)  # the caller's config keeps its own token ids
        tokenizer = build_tokenizer(texts, pad_to=config.text_config.vocab_size)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config.text_config.bos_token_id = config.text_config.pad_token_id = ids["<|endoftext|>"]
    config.text_config.eos_token_id = ids["<|im_end|>"]
    config.image_token_id, config.video_token_id = ids["<|image_pad|>"], ids["<|video_pad|>"]
    config.vision_start_token_id, config.vision_end_token_id = ids["<|vision_start|>"], ids["<|vision_end|>"]
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    image_processor = Qwen2VLImageProcessorPil(min_pixels=IMAGE_MIN_PIXELS, max_pixels=image_max_pixels)
    processor = ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                             chat_template=chat_template())
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_model_once(folder: Path, texts: list[str], seed: int, hidden_size: int = 128, layers: int = 2) -> Path:
    """The tiny default in `folder`, built there (under a temporary name, then renamed) unless it already is."""
    if not folder.exists():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        build_tiny_model(tmp, texts, seed, hidden_size=hidden_size, layers=layers)
        tmp.rename(folder)
    return folder
