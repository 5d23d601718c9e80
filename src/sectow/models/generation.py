"""Batched generation with HF `generate`: the one way the loop and the evaluation sample replies.
Prompts are (text, image or None) for either kind of player: a text-only player (`takes_images` false)
sees the text alone, so callers may pass the same prompts to both."""

from __future__ import annotations

import torch
from PIL import Image
from tqdm.auto import tqdm

from sectow import timing
from sectow.data.schema import load_image
from sectow.models.processor import takes_images


def chat_text(processor, text: str, has_image: bool, images_after_text: int = 0) -> str:
    """The chat-template text of one user turn: one image before the text when `has_image`, and
    `images_after_text` images after it (the layout of multi-image questions, see `generate`). A text-only
    model gets plain string content, which every causal LM's template takes (many take nothing else); its
    images, if any, are dropped."""
    if not takes_images(processor):
        content = text
    else:
        content = ([{"type": "image"}] if has_image else []) + [{"type": "text", "text": text}]
        content += [{"type": "image"}] * images_after_text
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                         tokenize=False)


ImageInput = str | Image.Image


@timing.timed("generation")
@torch.no_grad()
def generate(model, processor, prompts: list[tuple[str, ImageInput | list[ImageInput] | None]], *, max_new_tokens: int,
             batch_size: int = 32, temperature: float = 0.0, seed: int = 0, desc: str | None = None) -> list[str]:
    """Replies to (text, image) prompts; greedy when temperature is 0. The image is None, one image (or
    image path), which comes before the text, or a list of them, which follow the text in list order
    (as MMMU-Pro's reference inference lays out questions with several images). A text-only model
    ignores the images (they are not even read)."""
    torch.manual_seed(seed)
    vision = takes_images(processor)
    was_training = model.training
    model.eval()
    replies: list[str] = []
    sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else dict(do_sample=False)
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=desc is None, leave=False):
        batch = prompts[start:start + batch_size]
        texts, images = [], []
        for text, image in batch:
            several = isinstance(image, (list, tuple))
            texts.append(chat_text(processor, text, image is not None and not several,
                                   images_after_text=len(image) if several else 0))
            images += list(image) if several else [] if image is None else [image]
        if vision:
            images = [image if isinstance(image, Image.Image) else load_image(image) for image in images]
            inputs = processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        else:  # the chat template already wrote the special tokens (a BOS among them, for some models)
            inputs = processor(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = inputs.to(model.device)
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, **sampling)
        replies += processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    model.train(was_training)
    return [reply.strip() for reply in replies]

