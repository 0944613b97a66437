"""Training throughput while clients loop on ``GET /model`` (issue 21, item 6), or on
``GET /healthz`` or ``POST /predict`` (one record's features per request).

    .venv/bin/python -m bench.model_endpoint                 # 2^22 buckets, 8 clients
    .venv/bin/python -m bench.model_endpoint --dense         # the clients ask ?coef=dense
    .venv/bin/python -m bench.model_endpoint --endpoint /healthz
    .venv/bin/python -m bench.model_endpoint --endpoint /predict

A trainer (``python -m streamsgd train --source file --path - --hash-bits 22``, serving HTTP)
reads hashed named-feature records (:func:`bench.data.sparse_named_records`, repeated) from
its stdin, fed by this process. Its rate is ``streamsgd_samples_learned_total`` from
``/metrics`` over a window: idle, then with ``--clients`` threads each requesting ``/model``
in a loop (reading the whole body, not parsing it), then idle again. Printed: the samples/s of
each window, the loaded rate against the mean of the two idle ones (target ≥ 80 %), the
``/model`` answers served and their mean size.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.data import sparse_named_records

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(port: int, path: str, body: bytes | None = None) -> bytes:
    """GET ``path`` (POST ``body`` when given); the answer's body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        if body is None:
            connection.request("GET", path)
        else:
            connection.request("POST", path, body, {"Content-Type": "application/json"})
        return connection.getresponse().read()
    finally:
        connection.close()


def samples_learned(port: int) -> float:
    for line in fetch(port, "/metrics").decode().splitlines():
        if line.startswith("streamsgd_samples_learned_total "):
            return float(line.split()[1])
    raise RuntimeError("no streamsgd_samples_learned_total in /metrics")


def feed(process: subprocess.Popen[bytes], data: bytes, stop: threading.Event) -> None:
    """Write ``data`` to the trainer's stdin again and again until ``stop``."""
    assert process.stdin is not None
    try:
        while not stop.is_set():
            process.stdin.write(data)
    except (BrokenPipeError, ValueError):  # the trainer ended
        pass


def rate(port: int, seconds: float) -> float:
    """Samples learned per second over ``seconds``."""
    start, t0 = samples_learned(port), time.monotonic()
    time.sleep(seconds)  # a measuring window, not a wait for a condition
    return (samples_learned(port) - start) / (time.monotonic() - t0)


def loop_model(
    port: int, path: str, stop: threading.Event, sizes: list[int], body: bytes | None = None
) -> None:
    while not stop.is_set():
        sizes.append(len(fetch(port, path, body)))


def wait_for_training(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the trainer exited with {process.returncode}")
        try:
            if samples_learned(port) > 0:
                return
        except OSError:
            pass
        time.sleep(0.2)  # polling an observable condition: the server coming up
    raise RuntimeError("the trainer learned nothing within 120 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hash-bits", type=int, default=22)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each window")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dense", action="store_true", help="clients ask for ?coef=dense")
    parser.add_argument(
        "--endpoint",
        default="/model",
        help="what the clients loop on: /model, /healthz or /predict (POST, one record)",
    )
    args = parser.parse_args(argv)
    records = sparse_named_records(50_000)
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    # /predict: one record's features (the decoder hashes them as it does the stream's).
    body = json.dumps({"features": records[0]["features"]}).encode()
    port = free_port()
    command = [sys.executable, "-m", "streamsgd", "train", "--source", "file", "--path", "-"]
    command += ["--hash-bits", str(args.hash_bits), "--batch-size", str(args.batch_size)]
    command += ["--learning-rate", "0.1"]  # the fixed step it measures (auto is the default)
    command += ["--metrics-port", str(port), "--progress", "never", "--log-level", "WARNING"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, cwd=REPO)
    stop_feed, stop_clients = threading.Event(), threading.Event()
    feeder = threading.Thread(target=feed, args=(process, data, stop_feed), daemon=True)
    feeder.start()
    try:
        wait_for_training(port, process)
        idle_before = rate(port, args.seconds)
        sizes: list[int] = []
        path = args.endpoint + ("?coef=dense" if args.dense else "")
        clients = [
            threading.Thread(
                target=loop_model,
                args=(port, path, stop_clients, sizes, body if path == "/predict" else None),
            )
            for _ in range(args.clients)
        ]
        for client in clients:
            client.start()
        loaded = rate(port, args.seconds)
        served = len(sizes)
        stop_clients.set()
        for client in clients:
            client.join()
        idle_after = rate(port, args.seconds)
    finally:
        stop_feed.set()
        process.terminate()
        process.wait(60)
    idle = (idle_before + idle_after) / 2
    print(f"hash bits {args.hash_bits}, {args.clients} clients on {path}, {args.seconds:g} s each")
    print(f"idle before   {idle_before:10.0f} samples/s")
    mean_mb = sum(sizes) / max(len(sizes), 1) / 1e6
    print(
        f"{args.clients} clients    {loaded:10.0f} samples/s  ({served} answers, {mean_mb:.2f} MB)"
    )
    print(f"idle after    {idle_after:10.0f} samples/s")
    print(f"loaded / idle {loaded / idle:10.1%}  (target >= 80 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
