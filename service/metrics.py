"""Every Prometheus metric of the gateway, module-level, in one place. Labels stay
low-cardinality (RPC method, status code, model name, inversion method)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# RPCs take from milliseconds (ListModels) to tens of seconds (a long inversion).
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
# One backend call: a batched network run.
BACKEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
QUEUE_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
STEP_BUCKETS = (0, 1, 5, 10, 20, 30, 50, 75, 100, 200, 500, 1000)
LOSS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
PSNR_BUCKETS = (10, 15, 18, 20, 22, 24, 26, 28, 30, 35, 40)

RPC_REQUESTS = Counter(
    "stylegate_rpc_requests_total", "RPCs handled, by method and status code", ["method", "code"]
)
RPC_LATENCY = Histogram(
    "stylegate_rpc_duration_seconds", "RPC wall time, by method", ["method"], buckets=RPC_BUCKETS
)
RPC_IN_FLIGHT = Gauge("stylegate_rpc_in_flight", "RPCs being handled, by method", ["method"])

INVERSIONS_IN_FLIGHT = Gauge("stylegate_inversions_in_flight", "Inversions running now")
INVERSIONS = Counter(
    "stylegate_inversions_total",
    "Inversions run, by method and how they ended (ok, cancelled, deadline, invalid, error, ...)",
    ["method", "outcome"],
)
INVERSION_STEPS = Counter(
    "stylegate_inversion_steps_total", "Optimization steps run, by method", ["method"]
)
INVERSION_STEPS_PER_RUN = Histogram(
    "stylegate_inversion_steps_per_run",
    "Optimization steps per inversion (after early stopping)",
    ["method"],
    buckets=STEP_BUCKETS,
)
INVERSION_FINAL_LOSS = Histogram(
    "stylegate_inversion_final_loss",
    "Weighted loss of the returned latent",
    ["method"],
    buckets=LOSS_BUCKETS,
)
INVERSION_FINAL_TERMS = Histogram(
    "stylegate_inversion_final_loss_term",
    "Unweighted loss terms of the returned latent, by term (service/signatures.py LOSS_TERMS)",
    ["method", "term"],
    buckets=LOSS_BUCKETS,
)
INVERSION_PSNR = Histogram(
    "stylegate_inversion_psnr_db",
    "PSNR of the returned reconstruction",
    ["method"],
    buckets=PSNR_BUCKETS,
)

BACKEND_LATENCY = Histogram(
    "stylegate_backend_request_duration_seconds",
    "One backend run (a whole batch), by model",
    ["backend", "model"],
    buckets=BACKEND_BUCKETS,
)
BACKEND_BATCH_SIZE = Histogram(
    "stylegate_backend_batch_size",
    "Samples per backend run, by model",
    ["model"],
    buckets=BATCH_BUCKETS,
)
BACKEND_CALLS_PER_RUN = Histogram(
    "stylegate_backend_calls_per_batch",
    "Calls merged into one backend run, by model",
    ["model"],
    buckets=BATCH_BUCKETS,
)
BACKEND_QUEUE_WAIT = Histogram(
    "stylegate_backend_queue_wait_seconds",
    "Time a call waited for its batch to start, by model",
    ["model"],
    buckets=QUEUE_BUCKETS,
)
BACKEND_ERRORS = Counter(
    "stylegate_backend_errors_total", "Failed backend runs, by model", ["backend", "model"]
)
BACKEND_QUEUE_DEPTH = Gauge(
    "stylegate_backend_queue_depth", "Calls waiting in the micro-batcher, by model", ["model"]
)

BACKEND_UP = Gauge(
    "stylegate_backend_up", "1 while the last health probe of the backend succeeded", ["backend"]
)
# Triton's own cumulative statistics, read by the health watcher (Triton backend only).
TRITON_INFERENCES = Gauge(
    "stylegate_triton_inference_count", "Samples Triton has run, by model (cumulative)", ["model"]
)
TRITON_EXECUTIONS = Gauge(
    "stylegate_triton_execution_count",
    "Model executions (batches) Triton has run, by model (cumulative)",
    ["model"],
)
TRITON_MEAN_BATCH = Gauge(
    "stylegate_triton_mean_batch_size",
    "Triton's samples per execution since it started, by model",
    ["model"],
)

IMAGES_GENERATED = Counter(
    "stylegate_images_generated_total", "Images rendered, by RPC method", ["method"]
)


def serve_metrics(port: int, addr: str = "0.0.0.0") -> None:
    """Expose /metrics over HTTP (prometheus_client's own server thread)."""
    start_http_server(port, addr=addr)
