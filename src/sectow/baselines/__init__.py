"""The defenses and the attacker SecTOW is compared with (METHOD.md), on the same data as SecTOW:
prompt-level defenses, a supervised fine-tune on refusals (VLGuard-style), and a self-instruct attacker."""
