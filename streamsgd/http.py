"""HTTP endpoints on one port: /metrics, /healthz, /readyz, /model and POST /predict.

The only module that runs an HTTP server. Requests read the model's current parameters as
one immutable array (each SGD step replaces it), so a scrape or a prediction never blocks
training or sees a half-written update.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .codec import Decoder, RecordRejected
from .core.losses import sigmoid
from .core.model import OnlineLogisticRegression
from .core.sparse import SparseRows

log = logging.getLogger("streamsgd.http")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def model_document(model: OnlineLogisticRegression, extra: dict[str, Any]) -> dict[str, Any]:
    """The model as JSON-ready data (weights, counters, hyper-parameters, statistics)."""
    theta = model.parameters
    stats = model.gradient_stats
    return {
        "coef": theta[:-1].tolist(),
        "intercept": float(theta[-1]),
        "n_features": model.n_features,
        "n_updates": model.n_updates,
        "n_samples_seen": model.n_samples_seen,
        "params": model.get_params(),
        "gradient_statistics": {
            "gradient_variance": _finite_or_none(stats.per_sample_variance),
            "gradient_estimator_variance": _finite_or_none(stats.estimator_variance),
            "true_gradient_squared_norm": _finite_or_none(stats.true_gradient_squared_norm),
            "gradient_noise_scale": _finite_or_none(stats.noise_scale),
            "norm_test_ratio": _finite_or_none(stats.norm_test_ratio),
        },
        **extra,
    }


class HttpServer:
    """Serves the endpoints from a daemon thread.

    Parameters
    ----------
    host, port : str, int
        Port 0 picks a free port (see :attr:`port`).
    registry : CollectorRegistry
        What /metrics exposes.
    get_model : callable
        Returns the current model (the training loop may replace the object).
    decoder : Decoder
        Parses /predict bodies (dense or hashed named features).
    is_ready, is_healthy : callable
        Back /readyz and /healthz.
    model_extra : callable
        Extra fields for /model (for example the progressive loss).
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        get_model: Callable[[], OnlineLogisticRegression],
        decoder: Decoder,
        is_ready: Callable[[], bool],
        is_healthy: Callable[[], bool],
        model_extra: Callable[[], dict[str, Any]] = dict,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        app = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "streamsgd"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s %s", self.address_string(), format % args)

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, status: int, document: Any) -> None:
                self._send(status, json.dumps(document).encode(), "application/json")

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = is_healthy()
                    self._json(200 if ok else 503, {"status": "ok" if ok else "failed"})
                elif path == "/readyz":
                    ok = is_ready()
                    self._json(200 if ok else 503, {"ready": ok})
                elif path == "/model":
                    self._json(200, model_document(get_model(), model_extra()))
                else:
                    self._json(404, {"error": f"no such endpoint: {path}"})

            do_HEAD = do_GET

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != "/predict":
                    self._json(404, {"error": f"no such endpoint: {self.path}"})
                    return
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    self._json(411, {"error": "Content-Length required"})
                    return
                if length > app.max_body_bytes:
                    self._json(413, {"error": f"body over {app.max_body_bytes} bytes"})
                    self.close_connection = True
                    return
                body = self.rfile.read(length)
                try:
                    try:
                        request = json.loads(body)
                    except (ValueError, RecursionError):
                        raise RecordRejected("invalid_json", "body is not JSON") from None
                    X = decoder.decode_unlabelled(request)
                except RecordRejected as exc:
                    self._json(400, {"error": exc.detail, "reason": exc.reason})
                    return
                theta = get_model().parameters
                w, b = theta[:-1], theta[-1]
                z = X.matvec(w) + b if isinstance(X, SparseRows) else np.asarray(X) @ w + b
                self._json(200, {"probabilities": sigmoid(z).tolist()})

        self.max_body_bytes = max_body_bytes
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="streamsgd-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
