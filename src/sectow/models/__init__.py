"""Policies (defender, attacker): load from a local folder (a vision-language model or a text-only causal LM),
build the tiny default, prepare the real SmolLM2 folders, wrap in LoRA, generate."""
