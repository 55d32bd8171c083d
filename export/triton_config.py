"""Triton ``config.pbtxt`` text for the served models, written from service/signatures.py.

Torch-free: the local-Triton tooling imports this module to write the python-backend CPU
flavour of the same configs (``runtime="python"``), so every flavour shares one I/O
definition. Production flavours: ``runtime="onnx"`` (``onnxruntime_onnx``; ``device="gpu"``
adds the TensorRT execution accelerator) and ``runtime="tensorrt"`` (``tensorrt_plan``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from stylegate.service.signatures import ModelSignature, TensorSpec
from stylegate.service.signatures import signature as signature_of

RUNTIMES = ("onnx", "python", "tensorrt")
DEVICES = ("cpu", "gpu")

# Where Triton's onnxruntime backend keeps the TensorRT engines it builds for the gpu
# configs (one sub-directory per model); mount a persistent volume there in production.
TRT_ENGINE_CACHE_DIR = "/tmp/stylegate-trt-cache"
TRT_WORKSPACE_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class Batching:
    """Dynamic batching of one model: how large a batch Triton may form and how long a
    request may wait for company."""

    max_batch_size: int = 32
    preferred_batch_sizes: tuple[int, ...] = (4, 8, 16, 32)
    max_queue_delay_microseconds: int = 1000
    max_queue_size: int = 256  # requests beyond this are rejected at once (back-pressure)
    instance_count: int = 1


# Cheap networks batch wide; the inversion step is the expensive one and waits a little longer.
BATCHING: dict[str, Batching] = {
    "mapping": Batching(
        max_batch_size=256, preferred_batch_sizes=(16, 64, 256), max_queue_delay_microseconds=500
    ),
    "synthesis": Batching(max_batch_size=64, preferred_batch_sizes=(8, 16, 32, 64)),
    "encoder": Batching(max_batch_size=64, preferred_batch_sizes=(8, 16, 32, 64)),
    "features": Batching(max_batch_size=64, preferred_batch_sizes=(8, 16, 32, 64)),
    "inversion_step": Batching(
        max_batch_size=32, preferred_batch_sizes=(4, 8, 16, 32), max_queue_delay_microseconds=2000
    ),
}


# The gateway sends Priority.INTERACTIVE (1) and Priority.BULK (2); requests without a
# priority count as bulk, so they can never starve interactive ones.
PRIORITY_LEVELS = 2
DEFAULT_PRIORITY_LEVEL = 2


def _tensor(spec: TensorSpec, dims: Mapping[str, int]) -> str:
    shape = ", ".join(str(d) for d in spec.shape(dims))
    return (
        f'  {{\n    name: "{spec.name}"\n    data_type: TYPE_{spec.dtype}\n'
        f"    dims: [ {shape} ]\n  }}"
    )


def _warmup(signature: ModelSignature, dims: Mapping[str, int]) -> str:
    inputs = []
    for spec in signature.inputs:
        shape = ", ".join(str(d) for d in spec.shape(dims))
        inputs.append(
            f'    inputs {{\n      key: "{spec.name}"\n      value {{\n'
            f"        data_type: TYPE_{spec.dtype}\n"
            f"        dims: [ {shape} ]\n        random_data: true\n      }}\n    }}"
        )
    body = "\n".join(inputs)
    return f'model_warmup [\n  {{\n    name: "random_batch_1"\n    batch_size: 1\n{body}\n  }}\n]'


def _tensorrt_accelerator(name: str) -> str:
    params = {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": str(TRT_WORKSPACE_BYTES),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": f"{TRT_ENGINE_CACHE_DIR}/{name}",
    }
    lines = "\n".join(
        f'        parameters {{ key: "{k}" value: "{v}" }}' for k, v in params.items()
    )
    return (
        "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator : [ {\n"
        f'        name : "tensorrt"\n{lines}\n    }} ]\n  }}\n}}'
    )


def model_config(
    name: str,
    network: str,
    dims: Mapping[str, int],
    *,
    runtime: str = "onnx",
    device: str = "cpu",
    batching: Batching | None = None,
    parameters: Mapping[str, str] | None = None,
) -> str:
    """The ``config.pbtxt`` text of one served model.

    name: the Triton model name (``mapping``, ``transfer_synthesis``, ...).
    network: which signature it fulfils, a key of ``service.signatures.SIGNATURES``.
    dims: the generator's metadata values for the symbolic dims (``num_ws``, ``w_dim``, ...;
        a generator entry of stylegate.json works as is).
    runtime: "onnx" (platform onnxruntime_onnx, file model.onnx), "python" (backend python:
        a model.py in the version directory runs the model; same inputs and outputs), or
        "tensorrt" (platform tensorrt_plan, file model.plan).
    device: "cpu" (KIND_CPU) or "gpu" (KIND_GPU; with runtime "onnx" it also enables the
        TensorRT execution accelerator in fp16 with a workspace limit and an engine cache).
    batching: dynamic batching and instance settings; None takes ``BATCHING[network]``.
    parameters: extra string ``parameters`` of the model (e.g. for a python backend).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    signature = signature_of(network, dims)
    batching = batching or BATCHING[network]
    head = {
        "onnx": 'platform: "onnxruntime_onnx"',
        "python": 'backend: "python"',
        "tensorrt": 'platform: "tensorrt_plan"',
    }[runtime]
    preferred = ", ".join(
        str(b) for b in batching.preferred_batch_sizes if b <= batching.max_batch_size
    )
    parts = [
        f'name: "{name}"',
        head,
        f"max_batch_size: {batching.max_batch_size}",
        "input [\n" + ",\n".join(_tensor(t, dims) for t in signature.inputs) + "\n]",
        "output [\n" + ",\n".join(_tensor(t, dims) for t in signature.outputs) + "\n]",
        (
            "dynamic_batching {\n"
            f"  preferred_batch_size: [ {preferred} ]\n"
            f"  max_queue_delay_microseconds: {batching.max_queue_delay_microseconds}\n"
            f"  priority_levels: {PRIORITY_LEVELS}\n"
            f"  default_priority_level: {DEFAULT_PRIORITY_LEVEL}\n"
            "  default_queue_policy {\n"
            "    timeout_action: REJECT\n"
            "    allow_timeout_override: true\n"
            f"    max_queue_size: {batching.max_queue_size}\n"
            "  }\n}"
        ),
        (
            f"instance_group [\n  {{\n    count: {batching.instance_count}\n"
            f"    kind: KIND_{device.upper()}\n  }}\n]"
        ),
        _warmup(signature, dims),
    ]
    if runtime == "onnx" and device == "gpu":
        parts.append(_tensorrt_accelerator(name))
    for key, value in (parameters or {}).items():
        parts.append(f'parameters {{\n  key: "{key}"\n  value {{ string_value: "{value}" }}\n}}')
    return "\n".join(parts) + "\n"
