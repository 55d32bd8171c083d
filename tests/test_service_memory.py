"""Bounded memory (issue 11, finding 3): a real gateway process (its RSS is its own) under
the worst load its admission lets in: every inversion slot taken, and waves of the largest
requests it accepts, more than the request budget holds at once. RSS stays under the
manifests' memory limit with a fifth to spare and goes back near its idle level afterwards."""

from __future__ import annotations

import asyncio

import grpc
import yaml
from support.gateway_fakes import write_onnx_repository
from support.k8s_manifests import ROOT

from bench.soak import Sampler, gateway, png, settle
from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc
from stylegate.service.settings import Settings


def _manifest_limit_mb() -> float:
    """The gateway container's memory limit in k8s/base/gateway.yaml, in MiB (as RSS is
    measured: VmRSS kB / 1024)."""
    docs = yaml.safe_load_all((ROOT / "k8s/base/gateway.yaml").read_text())
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    (gateway,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]]
    limit = gateway["resources"]["limits"]["memory"]
    number, unit = limit[:-2], limit[-2:]
    return float(number) * {"Mi": 1, "Gi": 1024}[unit]


LIMIT_MB = _manifest_limit_mb()


def test_rss_stays_under_the_limit_under_the_worst_admissible_load_and_settles(tmp_path):
    write_onnx_repository(tmp_path)
    defaults = Settings()
    inversions = defaults.max_concurrent_inversions
    # one test client stands for many: its per-client limits are the server's
    settings = {"max_inversions_per_client": inversions, "max_steps": 100_000}
    big = png(1600, noise=True)  # about 7.7 MB: near max_image_bytes, a real decode
    assert 6 << 20 < len(big) <= defaults.max_image_bytes
    with gateway(tmp_path, **settings) as gw:
        idle = gw.rss_mb()

        async def load() -> tuple[float, dict]:
            codes: dict[str, int] = {}
            async with grpc.aio.insecure_channel(
                gw.address, options=[("grpc.max_send_message_length", 64 << 20)]
            ) as channel:
                stub = pb_grpc.StyleGateStub(channel)
                small = pb.Image(data=png(64))
                long_ones = [
                    stub.Invert(pb.InvertRequest(image=small, steps=100_000, preview_every=10))
                    for _ in range(inversions)
                ]
                readers = [asyncio.ensure_future(_drain(s)) for s in long_ones]
                with Sampler(gw, every=0.05) as sampler:
                    for _ in range(4):  # waves of the largest requests, twice the request budget
                        wave = defaults.max_request_bytes_in_flight // len(big) * 2
                        calls = [
                            stub.Edit(
                                pb.EditRequest(invert=pb.InvertRequest(image=pb.Image(data=big)))
                            )
                            for _ in range(wave)
                        ]
                        for code in await asyncio.gather(*(_code(c) for c in calls)):
                            codes[code] = codes.get(code, 0) + 1
                    for s in long_ones:
                        s.cancel()
                    await asyncio.gather(*readers, return_exceptions=True)
                return sampler.peak, codes

        peak, codes = asyncio.run(load())
        settled = asyncio.run(settle(gw, 3.0))
    print(f"idle {idle:.0f} MB, peak {peak:.0f} MB, settled {settled:.0f} MB, {codes}")
    assert codes.get("OK", 0) >= 4 and codes.get("RESOURCE_EXHAUSTED", 0) >= 4, codes
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert peak < LIMIT_MB * 0.8, f"peak RSS {peak:.0f} MB (idle {idle:.0f} MB)"
    # measured: idle 94-110, peak 710-880, settled 170-353 MB (353 once, in a full CI run):
    # the peak is the transport's copies of requests that admission then refuses (gRPC
    # receives a message whole first); what stays is glibc's fragmented heap, not a leak
    assert settled < idle + 300, f"RSS {settled:.0f} MB after the load (idle {idle:.0f} MB)"
    assert settled < peak / 2


async def _drain(stream) -> None:
    async for _ in stream:
        pass


async def _code(call) -> str:
    try:
        await call
        return "OK"
    except grpc.aio.AioRpcError as err:
        return err.code().name
