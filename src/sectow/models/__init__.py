"""Policies (defender, attacker): load from a local folder, build the tiny default, wrap in LoRA."""
