"""``streamsgd inspect DIR [--json]``: print a checkpoint."""

from __future__ import annotations

import json
import math
from typing import Any

from ..checkpoint import CheckpointError, DirectoryCheckpointStore
from ..core.model import OnlineLogisticRegression
from ..http.model_document import model_document
from .errors import UsageError


def checkpoint_document(directory: str) -> dict[str, Any]:
    """The checkpoint in ``directory`` as the JSON document ``inspect --json`` prints."""
    try:
        state = DirectoryCheckpointStore(directory, read_only=True).load()
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    if state is None:
        raise UsageError(f"no checkpoint in {directory}")
    extra = {key: state[key] for key in ("offsets", "positions", "totals", "source", "batch_size")}
    return model_document(OnlineLogisticRegression.from_state(state["model"]), extra)


def run(directory: str, as_json: bool) -> int:
    document = checkpoint_document(directory)
    if as_json:
        print(json.dumps(document, indent=2))
        return 0
    n = document["n_samples_seen"]
    loss = document["totals"]["progressive_loss_sum"] / n if n else math.nan
    print(f"checkpoint      {directory}")
    print(f"features        {document['params']['n_features']}")
    print(f"updates         {document['n_updates']}")
    print(f"samples         {n}")
    print(f"progressive loss {loss:.6f}")
    print(f"intercept       {document['intercept']}")
    print(f"offsets         {json.dumps(document['offsets'])}")
    return 0
