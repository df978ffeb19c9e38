"""Exported artifacts: the adapted-model bundle and how to load it."""
