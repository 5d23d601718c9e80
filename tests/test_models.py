"""The tiny default and the loading path every model folder takes."""

import re
import shutil

import pytest
import torch
from transformers import AutoModelForImageTextToText

from sectow.config import LoraSettings, PolicySettings
from sectow.world.miniature import corpus
from sectow.errors import UserError
from sectow.models.folder import ModelKind, check_model_folder, folder_kind
from sectow.models.generation import generate
from sectow.models.policy import load_policy, merged, save_policy, with_lora
from sectow.models.processor import ImageOnlyQwen2_5_VLProcessor, takes_images
from sectow.models.tiny import build_tiny_model, build_tokenizer


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


@pytest.fixture(scope="module")
def tiny_causal_lm(tmp_path_factory):
    """A randomly initialised two-layer Llama with the miniature's tokenizer: a text-only model folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("causal") / "model"
    tokenizer = build_tokenizer(corpus())
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_causal_lm_folder_loads_as_a_text_only_player(tiny_causal_lm, tmp_path):
    assert folder_kind(tiny_causal_lm) is ModelKind.CAUSAL_LM
    assert check_model_folder(tiny_causal_lm).startswith("llama (causal LM, text only), 1 safetensors file(s)")
    model, tokenizer = load_policy(tiny_causal_lm, PolicySettings())
    assert type(model).__name__ == "LlamaForCausalLM" and not takes_images(tokenizer) and tokenizer.padding_side == "left"
    from PIL import Image

    replies = generate(model, tokenizer, [("Explain how to bake bread.", Image.new("RGB", (56, 56), "red")),
                                          ("Explain how to bake bread.", None)], max_new_tokens=4)
    assert replies[0] == replies[1]  # the image is dropped for a text-only model
    save_policy(model, tokenizer, tmp_path / "copy")
    again, tokenizer_again = load_policy(tmp_path / "copy", PolicySettings())
    assert not takes_images(tokenizer_again)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_default_lora_regex_fits_each_kind(tiny, tiny_causal_lm):
    """The default regex names a VLM's language model; on a causal LM it means the same projections."""
    for folder, prefix in ((tiny, "base_model.model.model.language_model.layers."),
                           (tiny_causal_lm, "base_model.model.model.layers.")):
        model, _ = load_policy(folder, PolicySettings())
        wrapped = with_lora(model, LoraSettings(rank=2, alpha=4))
        adapted = [name for name, _ in wrapped.named_modules() if name.endswith("lora_A")]
        assert len(adapted) == 2 * 7 and all(name.startswith(prefix) for name in adapted), folder
    model, _ = load_policy(tiny_causal_lm, PolicySettings())
    with pytest.raises(UserError, match="matches no module of this llama model"):  # a user's own regex is kept as given
        with_lora(model, LoraSettings(target_modules=r".*language_model.*\.q_proj"))


@pytest.mark.parametrize("config,files,message", [
    ('{"model_type": "t5"}', [], "model_type 't5' is neither an image-text-to-text model nor a causal LM"),
    ('{"model_type": "llava"}', ["model.safetensors", "tokenizer.json"], "no image processor settings"),
    ('{"model_type": "llama"}', ["model.safetensors"], "no tokenizer"),
])
def test_folder_kinds_refused_in_one_line(tmp_path, config, files, message):
    from safetensors.torch import save_file

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(config)
    for name in files:
        if name.endswith(".safetensors"):
            save_file({"w": torch.zeros(4)}, folder / name)
        else:
            (folder / name).write_text("{}")
    with pytest.raises(UserError, match=re.escape(message)):
        check_model_folder(folder)


def test_a_model_with_non_finite_weights_is_not_saved(tiny, tmp_path):
    from sectow.models.policy import load_policy, save_policy

    model, processor = load_policy(tiny, PolicySettings())
    with torch.no_grad():
        next(p for p in model.parameters() if p.is_floating_point()).view(-1)[3] = float("nan")
    with pytest.raises(UserError, match="model-1: the trained model has non-finite weights"):
        save_policy(model, processor, tmp_path / "model-1")
    assert not any(tmp_path.iterdir())
