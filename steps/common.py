"""The few lines every stage shares: load typed params or exit naming the key, and exit cleanly on bad input."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path

from qslaw.config import Params, load_params

for _key, _value in {"HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
                     "GX_ANALYTICS_ENABLED": "false", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_key, _value)


class StageError(Exception):
    """Bad input a user can fix: printed without a traceback, exit status 1."""


def params_file() -> Path:
    return Path(os.environ.get("QSLAW_PARAMS", "params.yaml"))


def section(params: Params, *names: str) -> dict:
    """Plain dicts of the named params sections, for logging."""
    values = {name: getattr(params, name) for name in names}
    return {name: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else dict(v) for name, v in values.items()}


def checkpoint_spec(params: Params, stage: str, phase: str, *inputs: Path) -> object:
    """Where ``stage``'s ``phase`` checkpoints, fingerprinted by every param and its inputs (None when off).

    Inputs are identified cheaply: the sha256 of small files (reports, configs, manifests) and the size and
    mtime of large ones, so a changed upstream output never resumes a stale checkpoint."""
    from qslaw.fsutil import sha256_file
    from qslaw.train.checkpoint import CheckpointSpec, fingerprint

    if params.train.checkpoint_every == 0:
        return None
    ids = {}
    for root in inputs:
        for path in sorted(Path(root).rglob("*") if Path(root).is_dir() else [Path(root)]):
            if path.is_file():
                stat = path.stat()
                ids[str(path)] = sha256_file(path) if stat.st_size < 1 << 20 else [stat.st_size, stat.st_mtime_ns]
    return CheckpointSpec(Path(params.train.checkpoint_dir) / stage / phase, params.train.checkpoint_every,
                          fingerprint(stage, phase, dataclasses.asdict(params), ids))


def main_guard(stage: str, body: Callable[[Params], object],
               check: Callable[[Params], None] | None = None) -> None:
    """Load params and run ``check`` on them (exit 2 naming the bad key), run the stage body, turn StageError
    into exit 1."""
    try:
        params = load_params(params_file())
        if check:
            check(params)
    except (ValueError, FileNotFoundError) as e:
        print(f"{stage}: invalid params: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        body(params)
    except StageError as e:
        print(f"{stage}: {e}", file=sys.stderr)
        raise SystemExit(1) from None
