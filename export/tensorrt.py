"""``stylegate export --tensorrt``: TensorRT engines (``model.plan``) for an exported repository.

An engine is specific to the GPU model and the TensorRT version, so it is built where it
runs (k8s/overlays/gpu/tensorrt-build-job.yaml runs this in NVIDIA's TensorRT container).
Each ONNX model becomes ``1/model.plan`` with one optimization profile over the batch range
[1, max_batch_size] (optimum: the largest preferred batch size), and its ``config.pbtxt``
becomes a ``tensorrt_plan`` / KIND_GPU config; the ONNX config is kept as
``configs/onnx.pbtxt``. Uses the ``tensorrt`` Python API, else ``trtexec`` on PATH.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from stylegate.export import triton_config
from stylegate.service.metadata import load_repository
from stylegate.service.signatures import METADATA_FILE

log = logging.getLogger(__name__)

WORKSPACE_BYTES = triton_config.TRT_WORKSPACE_BYTES


class TensorRTUnavailable(RuntimeError):
    """No GPU or no TensorRT here."""


def _gpu_present() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    return subprocess.run([smi, "-L"], capture_output=True, timeout=30, check=False).returncode == 0


def available() -> str:
    """ "python" or "trtexec"; raises TensorRTUnavailable with the reason otherwise."""
    if not _gpu_present():
        raise TensorRTUnavailable(
            "no NVIDIA GPU found (nvidia-smi): TensorRT engines must be built on the GPU "
            "that runs them; run `stylegate export --tensorrt` on the GPU node pool "
            "(k8s/overlays/gpu/tensorrt-build-job.yaml). Without a GPU, serve the ONNX "
            "models (config.pbtxt, or configs/gpu.pbtxt for Triton's TensorRT execution "
            "accelerator)."
        )
    try:
        import tensorrt  # noqa: F401

        return "python"
    except ImportError:
        pass
    if shutil.which("trtexec"):
        return "trtexec"
    raise TensorRTUnavailable(
        "a GPU is present but neither the tensorrt Python module nor trtexec is installed "
        "(use NVIDIA's TensorRT container, nvcr.io/nvidia/tensorrt)"
    )


def _input_shapes(onnx_path: Path) -> dict[str, list[int]]:
    """Per-sample input shapes (batch excluded) from the ONNX graph."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {
        i.name: [d.dim_value for d in i.type.tensor_type.shape.dim[1:]] for i in model.graph.input
    }


def build_engine(
    onnx_path: Path, plan_path: Path, *, max_batch: int, opt_batch: int, fp16: bool, tool: str
) -> None:
    shapes = _input_shapes(onnx_path)
    if tool == "trtexec":

        def arg(b):
            return ",".join(f"{n}:{'x'.join(str(d) for d in [b, *s])}" for n, s in shapes.items())

        cmd = [
            "trtexec",
            f"--onnx={onnx_path}",
            f"--saveEngine={plan_path}",
            f"--minShapes={arg(1)}",
            f"--optShapes={arg(opt_batch)}",
            f"--maxShapes={arg(max_batch)}",
            f"--memPoolSize=workspace:{WORKSPACE_BYTES >> 20}M",
            *(["--fp16"] if fp16 else []),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"trtexec failed for {onnx_path}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = (
        0
        if int(trt.__version__.split(".")[0]) >= 10
        else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    )
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, shape in shapes.items():
        profile.set_shape(name, [1, *shape], [opt_batch, *shape], [max_batch, *shape])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path}")
    plan_path.write_bytes(bytes(plan))


def build_repository(repository: str | Path, *, precision: str = "fp16") -> list[Path]:
    """Build ``model.plan`` for every model of an exported repository and switch its
    config.pbtxt to ``tensorrt_plan``. Returns the plan paths. Raises TensorRTUnavailable
    without a GPU or TensorRT (checked before anything is touched)."""
    tool = available()
    repository = Path(repository)
    meta_path = repository / METADATA_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: run `stylegate export` first")
    repo = load_repository(repository)
    built = []
    for gen in repo.generators.values():
        for network, name in gen.models.items():
            model_dir = repository / name
            onnx_path = model_dir / "1" / "model.onnx"
            plan_path = model_dir / "1" / "model.plan"
            if plan_path in built or not onnx_path.exists():
                continue
            batching = triton_config.BATCHING[network]
            log.info("building %s (%s)", plan_path, precision)
            build_engine(
                onnx_path,
                plan_path,
                max_batch=batching.max_batch_size,
                opt_batch=max(batching.preferred_batch_sizes),
                fp16=precision == "fp16",
                tool=tool,
            )
            onnx_cfg = model_dir / "configs" / "onnx.pbtxt"
            onnx_cfg.parent.mkdir(exist_ok=True)
            if not onnx_cfg.exists():
                shutil.copyfile(model_dir / "config.pbtxt", onnx_cfg)
            (model_dir / "config.pbtxt").write_text(
                triton_config.model_config(
                    name, network, gen.dims, runtime="tensorrt", device="gpu"
                )
            )
            built.append(plan_path)
    return built
