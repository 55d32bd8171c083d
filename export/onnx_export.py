"""torch -> ONNX for the served networks, named and shaped by service/signatures.py."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from stylegate.export import graphs
from stylegate.gan import networks as N
from stylegate.service.signatures import ModelSignature
from stylegate.service.signatures import signature as signature_of

OPSET = 18


def example_batch(dims: Mapping[str, int]) -> int:
    """A batch size for tracing that equals no other dim of the model: symbolic tracing
    gives equal sizes one symbol, which would tie the batch to e.g. the RGB channels."""
    taken = {0, 1, 2, 3} | {int(v) for v in dims.values()}
    b = 5
    while b in taken:
        b += 1
    return b


def example_inputs(
    signature: ModelSignature, dims: Mapping[str, int], batch: int, *, seed: int = 0
):
    """Random inputs of a signature (loss weights and mask in their valid ranges)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for spec in signature.inputs:
        shape = (batch, *spec.shape(dims))
        if spec.name in ("mask", "noise_gain", "loss_weights"):
            t = torch.rand(shape, generator=gen)
            if spec.name == "mask":
                t = (t > 0.3).float()
        else:
            t = torch.randn(shape, generator=gen)
        out.append(t)
    return tuple(out)


def wrap(
    network: str,
    *,
    generator: N.Generator | None = None,
    encoder: nn.Module | None = None,
    feature_net: nn.Module | None = None,
) -> nn.Module:
    """The export module of one signature, from the networks it needs."""
    if network == "mapping":
        return graphs.MappingModel(generator.mapping)
    if network == "synthesis":
        return graphs.SynthesisModel(generator.synthesis)
    if network == "encoder":
        return graphs.EncoderModel(encoder)
    if network == "features":
        return graphs.FeaturesModel(feature_net)
    if network == "inversion_step":
        return graphs.InversionStep(generator.synthesis, encoder, feature_net)
    raise ValueError(f"unknown network {network!r}")


@contextlib.contextmanager
def _quiet():
    """The exporter prints progress and harmless warnings (no torchvision ops, ...)."""
    loggers = [
        logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(
    module: nn.Module, network: str, dims: Mapping[str, int], path: str | os.PathLike
) -> Path:
    """Export ``module`` (a ``wrap`` result) to ``path`` as a single-file ONNX model with a
    dynamic batch. The inversion step is first traced to a plain graph with its gradient."""
    signature = signature_of(network, dims)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval().requires_grad_(False)
    example = example_inputs(signature, dims, example_batch(dims))
    if network == "inversion_step":
        module = graphs.TracedStep(module, example)
    batch = torch.export.Dim("batch", min=1)
    dynamic = tuple({0: batch} for _ in signature.inputs)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(
            module,
            example,
            input_names=[t.name for t in signature.inputs],
            output_names=[t.name for t in signature.outputs],
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
        program.save(str(path), external_data=False)
    return path
