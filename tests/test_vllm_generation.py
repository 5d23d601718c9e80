"""vLLM generation without vLLM: the engine choice and its logged fallback, the requests vLLM would get
(through a stand-in `vllm` module), and `evaluate_model(use_vllm=True)` falling back on CPU."""

from __future__ import annotations

import json
import logging
import sys
import types
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from test_benchmarks import make_figstep, make_mmmu

from sectow.config import GrpoSettings
from sectow.world.miniature import corpus
from sectow.evaluation import benchmark_eval
from sectow.evaluation.benchmark_eval import evaluate_model
from sectow.models import vllm_generation
from sectow.models.generation import chat_text
from sectow.models.processor import load_processor
from sectow.models.tiny import build_tiny_model
from sectow.models.vllm_generation import generation_engine
from sectow.training.grpo import rollout_engine


class FakeLLM:
    """Records how it was built and what it was asked; every reply is a refusal."""

    built: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        FakeLLM.built.append(self)

    def get_default_sampling_params(self):
        return SimpleNamespace(repetition_penalty=1.05)  # Qwen2.5-VL-Instruct's generation_config

    def generate(self, requests, sampling, use_tqdm=True):
        self.requests, self.sampling = requests, sampling
        return [SimpleNamespace(outputs=[SimpleNamespace(text=" I'm sorry, I can't help with that. ")])
                for _ in requests]


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.built = []
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("vllm")
    make_figstep(base / "figstep")
    make_mmmu(base / "mmmu")
    benchmarks = {"figstep": base / "figstep", "mmmu_validation": base / "mmmu"}
    return build_tiny_model(base / "m", corpus(), seed=0), benchmarks


def test_no_vllm_means_hf_generate_with_a_warning(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    assert generation_engine(False) == "hf-generate" and not caplog.records
    with caplog.at_level(logging.WARNING):
        assert generation_engine(True) == "hf-generate"
        assert rollout_engine(GrpoSettings(use_vllm=True)) == "hf-generate"
    assert [r.getMessage() for r in caplog.records] == [
        "use_vllm is set but vllm is not installed: generating with HF generate instead"] * 2


def test_vllm_without_a_gpu_falls_back_and_with_one_is_used(fake_vllm, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert generation_engine(True) == "hf-generate"
    assert "no GPU is visible" in caplog.text
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert generation_engine(True) == "vllm"
    assert rollout_engine(GrpoSettings(use_vllm=True, vllm_mode="server")) == "vllm-server"


def test_vllm_requests_carry_the_chat_text_and_the_image(fake_vllm, tiny):
    model_dir, _ = tiny
    processor = load_processor(model_dir)
    picture = Image.new("RGB", (56, 56), "red")
    replies = vllm_generation.generate(model_dir, processor, [("What colour?", picture), ("Hello", None)],
                                       max_new_tokens=7, temperature=0.5, seed=3)
    assert replies == ["I'm sorry, I can't help with that."] * 2
    (llm,) = FakeLLM.built
    assert llm.kwargs["model"] == str(model_dir) and llm.kwargs["seed"] == 3
    with_image, text_only = llm.requests
    assert with_image == {"prompt": chat_text(processor, "What colour?", True), "multi_modal_data": {"image": picture}}
    assert text_only == {"prompt": chat_text(processor, "Hello", False)}
    assert "<|image_pad|>" in with_image["prompt"] and "<|image_pad|>" not in text_only["prompt"]
    assert llm.sampling["temperature"] == 0.5 and llm.sampling["max_tokens"] == 7
    assert llm.sampling["repetition_penalty"] == 1.05  # the folder's default, as HF generate applies it


def test_evaluate_model_with_vllm_on_cpu_falls_back_to_the_same_results(tiny, tmp_path, monkeypatch, caplog):
    model_dir, benchmarks = tiny
    monkeypatch.setitem(sys.modules, "vllm", None)
    with caplog.at_level(logging.WARNING):
        fallback = evaluate_model(model_dir, benchmarks, tmp_path / "vllm", limit=2, max_new_tokens=4, use_vllm=True)
    assert "vllm is not installed" in caplog.text
    plain = evaluate_model(model_dir, benchmarks, tmp_path / "hf", limit=2, max_new_tokens=4)
    assert fallback["generation_engine"] == plain["generation_engine"] == "hf-generate"
    assert fallback["benchmarks"]["figstep"]["n"] == 2 and fallback["benchmarks"]["mmmu_validation"]["n"] == 2
    assert (tmp_path / "vllm" / "responses.jsonl").read_text() == (tmp_path / "hf" / "responses.jsonl").read_text()


def test_evaluate_model_with_vllm_generates_through_vllm(tiny, tmp_path, fake_vllm, monkeypatch):
    model_dir, benchmarks = tiny
    monkeypatch.setattr(vllm_generation, "vllm_unavailable", lambda: None)
    monkeypatch.setattr(benchmark_eval, "load_policy", lambda *a, **k: pytest.fail("vLLM loads the model itself"))
    result = evaluate_model(model_dir, benchmarks, tmp_path / "out", limit=2, max_new_tokens=4, use_vllm=True)
    assert result["generation_engine"] == "vllm" and len(FakeLLM.built) == 1  # one engine for all benchmarks
    assert len(FakeLLM.built[0].requests) == 4
    assert result["benchmarks"]["figstep"]["asr"]["value"] == 0.0  # every fake reply refuses
    rows = [json.loads(line) for line in (tmp_path / "out" / "responses.jsonl").read_text().splitlines()]
    assert {row["response"] for row in rows} == {"I'm sorry, I can't help with that."}
