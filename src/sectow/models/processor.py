"""The one loader every model folder's processor goes through, `takes_images` to tell the two kinds
apart, and an image-only Qwen2.5-VL processor.

A vision-language folder gets its multimodal processor; a text-only causal LM gets its tokenizer, which
is then the "processor" callers pass around (to `generate`, to TRL as processing_class).

Qwen2.5-VL's stock processor insists on a video processor, which needs torchvision; where that is
missing, `AutoProcessor.from_pretrained` silently returns the bare tokenizer. The image-only class
keeps the stock processor's behaviour for images and text. Saved folders still name the stock class,
so a machine with torchvision loads them the normal way.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoProcessor, AutoTokenizer, ProcessorMixin
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

from sectow.errors import UserError
from sectow.models.folder import ModelKind, folder_kind


def takes_images(processor) -> bool:
    """Whether the player behind this processor sees images (a vision-language model) or only text (a causal
    LM, whose processor is its tokenizer)."""
    return hasattr(processor, "image_processor")


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processing for images and text, without the video processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def to_dict(self) -> dict:
        # Record the stock class so that `AutoProcessor` picks it where torchvision exists.
        return {**super().to_dict(), "processor_class": "Qwen2_5_VLProcessor"}


def load_processor(model_dir: Path, image_min_pixels: int | None = None, image_max_pixels: int | None = None):
    """Load the processor of a model folder: the tokenizer of a causal LM; for a vision-language model its
    processor, falling back to the image-only Qwen2.5-VL class when the stock loader returns a bare
    tokenizer. Raise UserError when a vision-language folder gives no multimodal processor. Padding is on
    the left (generation), and a tokenizer without a pad token pads with its EOS."""
    if folder_kind(Path(model_dir)) is ModelKind.CAUSAL_LM:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    sizes = {}
    if image_min_pixels is not None:
        sizes["min_pixels"] = image_min_pixels
    if image_max_pixels is not None:
        sizes["max_pixels"] = image_max_pixels
    try:
        processor = AutoProcessor.from_pretrained(model_dir, **sizes)
    except (ImportError, ValueError, OSError):
        processor = None
    if processor is None or not hasattr(processor, "image_processor"):
        processor = _image_only_qwen(model_dir, sizes)
    processor.tokenizer.padding_side = "left"  # generation pads on the left
    return processor


def _image_only_qwen(model_dir: Path, sizes: dict):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    # transformers 5 nests the image processor in processor_config.json; older folders have their own file.
    image_settings = None
    for name, key in (("processor_config.json", "image_processor"), ("preprocessor_config.json", None)):
        file = model_dir / name
        if file.is_file():
            settings = json.loads(file.read_text())
            image_settings = settings.get(key) if key else settings
            if image_settings:
                break
    if not image_settings:
        raise UserError(f"{model_dir}: no image processor settings (expected processor_config.json or preprocessor_config.json)")
    image_settings = {k: v for k, v in image_settings.items() if k not in ("image_processor_type", "processor_class")}
    image_processor = Qwen2VLImageProcessorPil(**{**image_settings, **sizes})
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    template_file = model_dir / "chat_template.jinja"
    chat_template = template_file.read_text() if template_file.is_file() else tokenizer.chat_template
    return ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)
