"""What hostile image headers cost the gateway: decompression-bomb bait (a ~35-byte GIF, a
~630-byte JPEG and a ~70-byte PNG whose headers claim 4096x4096) sent as Invert targets to
a `stylegate serve` subprocess, one after another.

    .venv/bin/python -m bench.hostile [--repository model_repository] [--count 150]

Prints, per kind: the status, the client-side rejection latency (p50 / max) and the
server's CPU per request (from /proc/<pid>/stat, before and after the kind's requests); a
2048x2048 JPEG bait within the pixel budget shows the cost of a reduced-scale decode.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.hostile_images import gif_bomb, jpeg_bomb, png_bomb

from bench.targets import gateway
from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(stub, pid: int, data: bytes, count: int) -> tuple[str, list[float], float]:
    """(status, latencies in s, server CPU s per request) of ``count`` Invert calls."""
    req = pb.InvertRequest(image=pb.Image(data=data), method=pb.INVERSION_METHOD_ENCODER)
    latencies, status = [], "OK"
    cpu0 = cpu_seconds(pid)
    for _ in range(count):
        started = time.perf_counter()
        try:
            list(stub.Invert(req, timeout=60))
        except grpc.RpcError as err:
            status = f"{err.code().name}: {err.details()}"
        latencies.append(time.perf_counter() - started)
    return status, latencies, (cpu_seconds(pid) - cpu0) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--count", type=int, default=150)
    args = parser.parse_args()
    cases = {
        f"GIF bomb ({len(gif_bomb())} B)": gif_bomb(),
        f"JPEG bomb ({len(jpeg_bomb())} B)": jpeg_bomb(),
        f"PNG bomb ({len(png_bomb())} B)": png_bomb(),
        "JPEG bomb 2048x2048 (within budget)": jpeg_bomb(2048),
    }
    # WARNING: the subprocess's stderr is a pipe nobody reads; a log line per refusal fills it
    quiet = {"STYLEGATE_LOG_LEVEL": "WARNING"}
    with (
        gateway(args.repository, extra_env=quiet) as (address, pid),
        grpc.insecure_channel(address) as channel,
    ):
        stub = pb_grpc.StyleGateStub(channel)
        measure(stub, pid, gif_bomb(), 5)  # warm up
        print(f"{'request':38s} {'p50 ms':>8s} {'max ms':>8s} {'server CPU ms':>14s}  status")
        for name, data in cases.items():
            status, lat, cpu = measure(stub, pid, data, args.count)
            print(
                f"{name:38s} {1e3 * statistics.median(lat):8.2f} {1e3 * max(lat):8.2f} "
                f"{1e3 * cpu:14.3f}  {status[:90]}"
            )


if __name__ == "__main__":
    main()
