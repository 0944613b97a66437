"""``GET /model`` built once per model version, one build at a time
(docs/operations.md#http-endpoints).

Building the document costs O(d): a copy of θ, its digest, its JSON. At 2^22 hashed buckets
one dense build took 2.7 s and 17.5 MB, and 8 clients looping on ``/model`` took training
from 2,034 to 27 samples/s. Three bounds keep it cheap:

* **Sparse by default for a hashed model**: w is sent as its non-zero buckets
  (``coef_indices``, ``coef_values``); the dense ``coef`` only with ``?coef=dense``.
* **Cached per version**: the model part of the document is serialised once for a version
  (the model object, ``n_updates`` and ``n_samples_seen``) and form; later requests send the
  same bytes. The small ``extra`` fields (progressive loss, offsets) are serialised per request.
* **One build at a time**: a lock serialises builds; a request that waited for someone
  else's build takes its result when that build started after the request arrived.
  A build taking t seconds is reused for the next ``REBUILD_FACTOR``·t seconds even if the
  model moved on (builds under 5 ms are never reused for a newer version), so that
  ``/model`` takes at most about 1 / (1 + REBUILD_FACTOR) of one core whatever the clients
  do (the document says its own ``n_updates``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..core.model import OnlineLogisticRegression
from .model_document import json_ready, model_document

# After a build of t seconds, the cached document is served for REBUILD_FACTOR·t seconds
# before the next build; 10 keeps /model under about an eleventh of one core (5 measured
# 40–72 % of the idle training rate with 8 clients at 2^22 buckets, 10 measured 93–107 %).
REBUILD_FACTOR = 10.0
# Builds faster than this are never reused for a newer version: a small model's /model is
# always current.
MIN_THROTTLED_BUILD_SECONDS = 0.005
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class Pacer:
    """Spaces ``/model`` answers so that they take at most about 1 / (1 + ``factor``) of the
    process's time: after an answer that cost c seconds of CPU (its thread's, build and send
    included), the next one starts ``factor``·c later. CPU time, not wall time, so that a
    client that reads slowly does not delay the others.

    Parameters
    ----------
    factor : float
        Idle time per unit of answer CPU time.
    """

    def __init__(self, factor: float = REBUILD_FACTOR) -> None:
        self.factor = factor
        self._next = 0.0

    def wait(self) -> float:
        """Sleep until the next answer may start; returns this thread's CPU clock."""
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing, not waiting for a condition: the GIL goes to training
        return time.thread_time()

    def spent(self, cpu_start: float) -> None:
        """Record the CPU time the answer started at ``cpu_start`` (from :meth:`wait`) cost."""
        self._next = time.monotonic() + self.factor * (time.thread_time() - cpu_start)


@dataclass(frozen=True)
class _Built:
    """One serialised model part: its version key, its bytes (a JSON object) and its keys."""

    key: tuple[int, int, int]
    body: bytes
    keys: frozenset[str]
    started: float
    finished: float


class ModelDocumentCache:
    """The bytes of ``GET /model``, per form (sparse or dense coefficients).

    Parameters
    ----------
    get_model : callable
        Returns the current model (the training loop may replace the object).
    model_extra : callable
        Extra fields, serialised per request (they may replace none of the model's own).
    """

    def __init__(
        self,
        get_model: Callable[[], OnlineLogisticRegression],
        model_extra: Callable[[], dict[str, Any]],
    ) -> None:
        self._get_model = get_model
        self._model_extra = model_extra
        self._lock = threading.Lock()
        self._built: dict[bool, _Built] = {}
        # The model of the cached versions: holding it keeps its id() from being reused.
        self._models: dict[bool, OnlineLogisticRegression] = {}
        self.n_builds = 0

    def body(self, sparse: bool) -> list[bytes]:
        """The document as chunks to send one after the other (their total is the body)."""
        arrived = time.monotonic()
        model = self._get_model()
        with self._lock:
            built = self._current(model, sparse, arrived)
        extra: Mapping[str, Any] = self._model_extra()
        if not extra:
            return [built.body]
        clash = built.keys & extra.keys()
        if clash:
            raise ValueError(f"extra fields would replace the model's own: {sorted(clash)}")
        tail = orjson.dumps(json_ready(dict(extra)), option=_JSON_OPTIONS)
        # Two JSON objects spliced: drop the model part's "}" and the extra part's "{".
        return [built.body[:-1], b"," + tail[1:]]

    def _current(self, model: OnlineLogisticRegression, sparse: bool, arrived: float) -> _Built:
        """The cached build when still good for this request, else a new one (lock held)."""
        key = (id(model), model.n_updates, model.n_samples_seen)
        built = self._built.get(sparse)
        if built is not None and self._models.get(sparse) is model:
            now = time.monotonic()
            fresh = built.key == key
            shared = built.started >= arrived  # built for a request that came after ours
            took = built.finished - built.started
            throttled = took >= MIN_THROTTLED_BUILD_SECONDS and (
                now - built.finished < REBUILD_FACTOR * took
            )
            if fresh or shared or throttled:
                return built
        started = time.monotonic()
        document = model_document(model, sparse_coef=sparse)
        body = orjson.dumps(document, option=_JSON_OPTIONS)
        built = _Built(key, body, frozenset(document), started, time.monotonic())
        self._built[sparse], self._models[sparse] = built, model
        self.n_builds += 1
        return built
