"""Run reports: one self-contained HTML page and a Markdown twin, built from a finished or partial run folder."""
