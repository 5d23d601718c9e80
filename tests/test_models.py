"""The tiny default and the loading path every model folder takes."""

import re
import shutil

import pytest
import torch
from transformers import AutoModelForImageTextToText

from sectow.config import LoraSettings, PolicySettings
from sectow.world.miniature import corpus
from sectow.errors import UserError
from sectow.models.generation import generate
from sectow.models.policy import load_policy, merged, save_policy, with_lora
from sectow.models.processor import ImageOnlyQwen2_5_VLProcessor
from sectow.models.tiny import build_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", corpus(), seed=0)


def test_tiny_model_round_trips_bit_identically(tiny, tmp_path):
    model, processor = load_policy(tiny, PolicySettings())
    assert isinstance(model, AutoModelForImageTextToText._model_mapping[type(model.config)])
    assert isinstance(processor, ImageOnlyQwen2_5_VLProcessor)
    save_policy(model, processor, tmp_path / "copy")
    again, _ = load_policy(tmp_path / "copy", PolicySettings())
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert not (tmp_path / "copy.tmp").exists()


def test_processor_config_names_the_stock_class(tiny):
    assert '"processor_class": "Qwen2_5_VLProcessor"' in (tiny / "processor_config.json").read_text()


def test_generation_with_and_without_images(tiny):
    model, processor = load_policy(tiny, PolicySettings())
    from PIL import Image

    replies = generate(model, processor, [("What color is the image?", Image.new("RGB", (56, 56), "red")),
                                          ("Explain how to bake bread.", None)], max_new_tokens=4)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)


def test_lora_stays_in_the_language_model(tiny):
    model, _ = load_policy(tiny, PolicySettings())
    wrapped = with_lora(model, LoraSettings(rank=2, alpha=4))
    adapted = [name for name, _ in wrapped.named_modules() if name.endswith("lora_A")]
    assert adapted and all("language_model" in name for name in adapted)
    assert not any("visual" in name for name in adapted)
    plain = merged(wrapped)
    assert not any("lora" in name for name, _ in plain.named_modules())


def test_lora_trains_through_checkpointed_layers(tiny):
    """The GPU recipes turn on activation checkpointing with LoRA: the frozen base must still pass
    gradients back to every adapter, and the loss must match the unchecked model's."""
    losses = []
    for checkpointing in (False, True):
        model, processor = load_policy(tiny, PolicySettings(gradient_checkpointing=checkpointing))
        torch.manual_seed(0)
        assert model.is_activation_checkpointing == checkpointing
        wrapped = with_lora(model, LoraSettings(rank=2, alpha=4))
        for name, param in wrapped.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.02)  # LoRA starts B at zero, which stops A's gradient
        wrapped.train()
        batch = processor.tokenizer(["Explain how to bake bread."], return_tensors="pt")
        loss = wrapped(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        grads = {name: param.grad for name, param in wrapped.named_parameters() if param.requires_grad}
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values()), checkpointing
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


CONFIG = '{"model_type": "qwen2_5_vl"}'


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "model folder not found"),
    (lambda p: p.mkdir(), "no config.json"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text("{}")), "no model_type"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text(CONFIG)), "no model weights (model.safetensors or"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text(CONFIG), (p / "adapter_model.safetensors").write_bytes(b"x")),
     "no model weights"),  # a name from_pretrained does not load
    (lambda p: (p.mkdir(), (p / "config.json").write_text(CONFIG), (p / "pytorch_model.bin").write_bytes(b"x")),
     "found pytorch_model.bin, a pickle checkpoint: pickle checkpoints are not loaded"),
])
def test_bad_model_folders(tmp_path, make, message):
    folder = tmp_path / "m"
    make(folder)
    with pytest.raises(UserError, match=re.escape(message)):
        load_policy(folder, PolicySettings())


@pytest.fixture(scope="module")
def pickled(tiny, tmp_path_factory):
    """The tiny model with its weights as a pickle checkpoint (pytorch_model.bin) instead of safetensors."""
    folder = tmp_path_factory.mktemp("pickled") / "model"
    shutil.copytree(tiny, folder)
    model, _ = load_policy(tiny, PolicySettings())
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def test_pickle_weights_load_only_with_the_flag(tiny, pickled):
    with pytest.raises(UserError, match=re.escape(f"{pickled}: no *.safetensors weights; found pytorch_model.bin")):
        load_policy(pickled, PolicySettings())
    model, _ = load_policy(pickled, PolicySettings(allow_pickle=True))
    reference, _ = load_policy(tiny, PolicySettings(allow_pickle=True))  # safetensors still preferred and loaded
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
