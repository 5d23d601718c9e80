"""Evaluation: answer parsing and the metrics (ASR, over-refusal, accuracy) computed from judged responses."""
