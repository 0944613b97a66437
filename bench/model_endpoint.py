"""Training throughput while clients loop on ``GET /model`` (issue 21, item 6), or on
``GET /healthz`` or ``POST /predict`` (one record's features per request).

    .venv/bin/python -m bench.model_endpoint                 # 2^22 buckets, 8 clients
    .venv/bin/python -m bench.model_endpoint --dense         # the clients ask ?coef=dense
    .venv/bin/python -m bench.model_endpoint --endpoint /healthz
    .venv/bin/python -m bench.model_endpoint --endpoint /predict
    .venv/bin/python -m bench.model_endpoint --endpoint /predict --rounds 6 --seconds 5

A trainer (``python -m streamsgd train --source file --path - --hash-bits 22``, serving HTTP)
reads hashed named-feature records (:func:`bench.data.sparse_named_records`, repeated) from
its stdin, fed by this process. Its rate is ``streamsgd_samples_learned_total`` from
``/metrics`` over a window: idle, then with ``--clients`` threads each requesting ``/model``
in a loop (reading the whole body, not parsing it), then idle again; ``--rounds N`` repeats
the loaded and idle windows N times. Printed: the samples/s of each window, each loaded rate
against the mean of the idle ones on either side and the median of these ratios (target
≥ 80 %; on a shared machine the load drifts between windows, hence several short rounds),
the answers served and their mean size.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
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


def loaded_window(
    port: int, path: str, n_clients: int, seconds: float, body: bytes | None
) -> tuple[float, list[int]]:
    """Samples learned per second while ``n_clients`` threads loop on ``path``, and the
    sizes of the answers they got."""
    stop = threading.Event()
    sizes: list[int] = []
    clients = [
        threading.Thread(target=loop_model, args=(port, path, stop, sizes, body))
        for _ in range(n_clients)
    ]
    for client in clients:
        client.start()
    try:
        loaded = rate(port, seconds)
    finally:
        stop.set()
        for client in clients:
            client.join()
    return loaded, sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hash-bits", type=int, default=22)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each window")
    parser.add_argument(
        "--rounds", type=int, default=1, help="loaded windows, each between two idle ones"
    )
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
    stop_feed = threading.Event()
    feeder = threading.Thread(target=feed, args=(process, data, stop_feed), daemon=True)
    feeder.start()
    path = args.endpoint + ("?coef=dense" if args.dense else "")
    print(f"hash bits {args.hash_bits}, {args.clients} clients on {path}, {args.seconds:g} s each")
    ratios: list[float] = []
    try:
        wait_for_training(port, process)
        idle = rate(port, args.seconds)
        print(f"idle          {idle:10.0f} samples/s")
        for _ in range(args.rounds):
            loaded, sizes = loaded_window(
                port, path, args.clients, args.seconds, body if path == "/predict" else None
            )
            idle_after = rate(port, args.seconds)
            # Against the idle windows on either side: the machine's load drifts.
            ratios.append(loaded / ((idle + idle_after) / 2))
            mean_mb = sum(sizes) / max(len(sizes), 1) / 1e6
            print(
                f"{args.clients} clients    {loaded:10.0f} samples/s  ({len(sizes)} answers, "
                f"{len(sizes) / args.seconds:.0f}/s, {mean_mb:.2f} MB)  {ratios[-1]:6.1%}"
            )
            print(f"idle          {idle_after:10.0f} samples/s")
            idle = idle_after
    finally:
        stop_feed.set()
        process.terminate()
        process.wait(60)
    print(
        f"loaded / idle {statistics.median(ratios):10.1%}  median of {len(ratios)} (target >= 80 %)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
