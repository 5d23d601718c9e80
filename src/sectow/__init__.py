"""SecTOW: harden a multimodal LLM against jailbreaks with an attacker/defender tug-of-war (GRPO)."""

__version__ = "0.1.0"
