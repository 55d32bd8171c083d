"""The gateway's one settings object: defaults here, overridden by ``STYLEGATE_<FIELD>``
environment variables, overridden by command-line flags (``Settings.load(**flags)``)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

ENV_PREFIX = "STYLEGATE_"


@dataclasses.dataclass(frozen=True)
class Settings:
    # serving
    host: str = "127.0.0.1"  # containers pass 0.0.0.0 (Dockerfile, k8s/base/gateway.yaml)
    port: int = 50051
    metrics_port: int = 9090  # 0 = no metrics HTTP server
    backend: str = "embedded"  # embedded | triton
    model_repository: str = "model_repository"
    triton_url: str = "localhost:8001"
    log_level: str = "INFO"
    log_json: bool = True

    # security (service/security.py): transport, access, what is exposed
    tls_cert: str = ""  # PEM certificate chain of the gRPC port; "" = plaintext
    tls_key: str = ""  # PEM private key of tls_cert
    tls_client_ca: str = ""  # PEM CA of client certificates; set = mutual TLS, required
    auth_file: str = ""  # access file (NAME CREDENTIAL GRANTS per line); "" = no authorization
    reflection: bool = False  # gRPC server reflection (grpcurl without the .proto files)
    metrics_host: str = ""  # bind address of /metrics; "" = host
    health_port: int = 0  # plaintext port with grpc.health.v1 only (kubelet probes); 0 = none
    triton_tls: bool = False  # TLS to Triton (implied by any triton_tls_* file)
    triton_tls_ca: str = ""  # PEM CA of Triton's certificate; "" = the system's roots
    triton_tls_cert: str = ""  # PEM client certificate for Triton (mutual TLS)
    triton_tls_key: str = ""  # PEM key of triton_tls_cert
    # an inference call Triton does not answer within this is UNAVAILABLE (a hung Triton);
    # 0 = no cap (keepalive then notices in 30 + 10 s)
    triton_call_timeout_s: float = 10.0
    # requests out to Triton at once, all models together, besides interactive_run_slots (the
    # micro-batcher below merges the gateway's calls into them; Triton's dynamic batcher
    # merges several gateways'). 2 suits a CPU Triton with two instances of the step (the
    # local one, ops/triton_local.py); raise it for a GPU Triton, where Triton merging
    # concurrent requests into larger batches pays.
    triton_max_in_flight: int = 2
    # bulk samples per Triton request of the inversion step (0: bulk_max_batch): 4 on a CPU
    # Triton (docs/design.md, "Small batches of the inversion step"); 0 for a GPU Triton
    triton_step_bulk_max_batch: int = 4

    # embedded backend
    intra_op_threads: int = 2  # onnxruntime threads per session run
    session_concurrency: int = 1  # onnxruntime runs in flight at once (thread pool size)
    # two full bulk batches of the inversion step waiting together run at once, each on a
    # session of half the threads (service/backends/embedded.py, PAIRED_NETWORKS)
    narrow_pairs: bool = True
    # bulk samples per run of the inversion step (0: bulk_max_batch). On 2 CPU cores the step
    # runs fastest in batches of 2, each on one thread (docs/design.md, "Small batches of the
    # inversion step"); raise it with intra_op_threads on larger machines.
    step_bulk_max_batch: int = 2

    # micro-batcher, both backends (service/backends/batcher.py)
    # further runs for interactive calls only: a Generate runs beside a bulk run (inversion
    # steps, BatchGenerate) instead of waiting for it
    interactive_run_slots: int = 1
    max_batch: int = 32  # samples per onnxruntime run / Triton request
    batch_window_ms: float = 2.0  # micro-batcher: wait this long for more calls
    max_queue: int = 1024  # pending calls per model before OverCapacity

    # limits
    max_steps: int = 1000
    max_image_bytes: int = 8 * 1024 * 1024  # a 12 MP JPEG is 3-6 MB
    max_image_side: int = 4096
    max_image_pixels: int = 4096 * 3072  # decoded pixels, from the header (12 MP photos fit)
    max_generate: int = 64  # images per Generate / Interpolate frames
    max_batch_seeds: int = 1_000_000
    max_concurrent_inversions: int = 64
    # Memory (issue 11, finding 3; k8s limit 1.5 GiB): a request is held whole before admission
    # looks at it, and costs about twice its size while parsed (the transport's buffer and
    # the protobuf's bytes). Admitted large requests: at most max_request_bytes_in_flight
    # (128 MiB) x 2 = 256 MiB; refused ones live for under a millisecond each. Idle gateway
    # about 100 MB (Triton backend), inversions a few kB each: worst case 100 + 256 + 2 x 64
    # concurrent senders x 10 MiB in transit = 0.6 GiB, measured 0.5 GiB peak by
    # tests/test_service_memory.py.
    max_message_bytes: int = 10 * 1024 * 1024

    # admission (service/admission.py): concurrent RPCs per kind, over all clients and per
    # client (the peer's address, or its authenticated identity); past them RESOURCE_EXHAUSTED
    # at once. The inversion pool is max_concurrent_inversions above.
    max_light_rpcs: int = 64  # ListModels, ModelInfo, ListDirections, Reload
    max_light_rpcs_per_client: int = 32
    max_interactive_rpcs: int = 32  # Generate, Edit of a latent, StyleMix, Interpolate
    max_interactive_rpcs_per_client: int = 16
    interactive_max_images: int = 8  # a Generate / Interpolate of more images is "large"
    max_large_rpcs: int = 8  # large Generates / Interpolates (run at bulk priority)
    max_large_rpcs_per_client: int = 4
    max_batch_streams: int = 8  # BatchGenerate streams
    max_batch_streams_per_client: int = 4
    max_inversions_per_client: int = 16  # Invert streams and Edits of an image
    # requests over 1 MiB (images) held at once, all RPCs together (memory: see max_message_bytes)
    max_request_bytes_in_flight: int = 128 * 1024 * 1024
    # time limits: an inversion ends DEADLINE_EXCEEDED past max_inversion_s; a stream whose
    # client stops reading ends RESOURCE_EXHAUSTED once one message waits write_timeout_s
    max_inversion_s: float = 300.0
    write_timeout_s: float = 10.0
    # bulk work (inversion steps, BatchGenerate, large Generates) runs in batches of at most
    # bulk_max_batch samples, after any waiting interactive call: an interactive call waits
    # for at most one such run (service/backends/batcher.py)
    bulk_max_batch: int = 8

    # health: how often the backend is probed (health follows it; Triton statistics exported)
    health_interval_s: float = 5.0  # 0 = no probing: SERVING from start-up to drain

    # shutdown
    drain_grace_s: float = 30.0  # wait this long for in-flight RPCs after NOT_SERVING

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults < environment (``STYLEGATE_PORT=...``) < ``overrides`` (None = not given)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _parse(kind: Any, raw: str, name: str) -> Any:
    kind = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        return raw
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from None
