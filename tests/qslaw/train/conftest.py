"""Shared by the training tests: in-process DeepSpeed runs must not leak rendezvous variables."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _restore_rendezvous_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop sets RANK/MASTER_PORT for a single process; keep them from leaking into later tests."""
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        present = key in os.environ
        monkeypatch.setenv(key, os.environ.get(key, ""))  # records the original value (or its absence)
        if not present:
            monkeypatch.delenv(key)
