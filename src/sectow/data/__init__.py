"""Samples (image + text + label), the built-in miniature world, and benchmark loaders."""
