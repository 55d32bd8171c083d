"""Tensor signatures of the served models: the one contract between export/ and the gateway.

The exporter names its ONNX inputs/outputs from here, the Triton configs are written from
here, and the gateway builds requests (and checks Triton's model metadata at start-up)
from here. Torch-free on purpose: export/ imports this module and nothing else of service/.

Dims exclude the batch dimension (every model has a dynamic batch). A dim is an int or a
symbol resolved from the generator's metadata (``stylegate.json``): ``z_dim``, ``w_dim``,
``num_ws``, ``resolution``, ``feature_channels``, ``feature_resolution``, ``c_dim``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence

import numpy as np

Dim = int | str


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton dtype name: "FP32", ...
    dims: tuple[Dim, ...]  # per-sample dims (batch excluded)
    doc: str = ""

    def shape(self, meta: Mapping[str, int]) -> tuple[int, ...]:
        """Concrete per-sample shape for a generator's metadata."""
        return tuple(d if isinstance(d, int) else int(meta[d]) for d in self.dims)

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(TRITON_TO_NUMPY[self.dtype])


@dataclasses.dataclass(frozen=True)
class ModelSignature:
    network: str  # mapping | synthesis | encoder | features | inversion_step
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    doc: str = ""

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(t for t in self.outputs if t.name == name)


TRITON_TO_NUMPY = {"FP32": "float32", "FP16": "float16", "INT64": "int64", "INT32": "int32"}

IMAGE_DIMS: tuple[Dim, ...] = (3, "resolution", "resolution")  # RGB in [-1, 1], NCHW
WS_DIMS: tuple[Dim, ...] = ("num_ws", "w_dim")
FEATURE_DIMS: tuple[Dim, ...] = ("feature_channels", "feature_resolution", "feature_resolution")

# The inversion loss terms, by name: the order of the step's ``loss_weights`` input and
# ``loss_terms`` output. The gateway addresses weights, terms, progress messages and metrics
# by these names (the proto's LossWeights/LossTerms fields are spelled the same), so a new
# term is a change in the inversion-step graph, this list and the proto.
LOSS_TERMS: tuple[str, ...] = ("pixel", "feature", "domain")
_TERMS_DOC = ", ".join(LOSS_TERMS)

MAPPING = ModelSignature(
    "mapping",
    inputs=(TensorSpec("z", "FP32", ("z_dim",), "latent code, standard normal"),),
    outputs=(TensorSpec("w", "FP32", ("w_dim",), "intermediate latent (untruncated)"),),
    doc="z -> w; truncation is applied by the gateway with w_avg",
)

SYNTHESIS = ModelSignature(
    "synthesis",
    inputs=(
        TensorSpec("ws", "FP32", WS_DIMS, "W+ latent, one w per layer"),
        TensorSpec("noise_gain", "FP32", (1,), "1 = the model's constant noise, 0 = no noise"),
    ),
    outputs=(TensorSpec("image", "FP32", IMAGE_DIMS, "RGB image in about [-1, 1]"),),
)

ENCODER = ModelSignature(
    "encoder",
    inputs=(TensorSpec("image", "FP32", IMAGE_DIMS, "RGB image in [-1, 1]"),),
    outputs=(
        TensorSpec("ws", "FP32", WS_DIMS, "W+ latent predicted by the domain-guided encoder"),
    ),
)

FEATURES = ModelSignature(
    "features",
    inputs=(TensorSpec("image", "FP32", IMAGE_DIMS, "RGB image in [-1, 1]"),),
    outputs=(TensorSpec("features", "FP32", FEATURE_DIMS, "perceptual features"),),
    doc="the target's perceptual features, computed once per inversion",
)

INVERSION_STEP = ModelSignature(
    "inversion_step",
    inputs=(
        TensorSpec("ws", "FP32", WS_DIMS, "current W+ latent"),
        TensorSpec("target", "FP32", IMAGE_DIMS, "target image in [-1, 1]"),
        TensorSpec(
            "target_features", "FP32", FEATURE_DIMS, "features(target), from the features model"
        ),
        TensorSpec("loss_weights", "FP32", (len(LOSS_TERMS),), f"weights of ({_TERMS_DOC})"),
        TensorSpec(
            "mask", "FP32", (1, "resolution", "resolution"), "1 where pixel/feature terms count"
        ),
    ),
    outputs=(
        TensorSpec("loss", "FP32", (1,), "weighted total loss per sample"),
        TensorSpec("loss_terms", "FP32", (len(LOSS_TERMS),), f"unweighted ({_TERMS_DOC}) terms"),
        TensorSpec("grad", "FP32", WS_DIMS, "d loss / d ws, per sample"),
        TensorSpec("image", "FP32", IMAGE_DIMS, "G(ws), the reconstruction at this step"),
    ),
    doc=(
        "loss = w_pix * mean_mask((x - G(w))^2) + w_feat * mean_mask((F(x) - F(G(w)))^2)"
        " + w_dom * mean((w - E(G(w)))^2), and its gradient with respect to w"
    ),
)

SIGNATURES: dict[str, ModelSignature] = {
    s.network: s for s in (MAPPING, SYNTHESIS, ENCODER, FEATURES, INVERSION_STEP)
}

# Class-conditional generators (NVlabs ``c_dim > 0``) take the label with z: their mapping
# has a second input. Everything else is the same contract.
CLASS_LABEL = TensorSpec("c", "FP32", ("c_dim",), "one-hot class label (conditional models)")
MAPPING_CONDITIONAL = dataclasses.replace(MAPPING, inputs=(*MAPPING.inputs, CLASS_LABEL))


def signature(network: str, meta: Mapping[str, int]) -> ModelSignature:
    """The signature ``network`` of a generator with metadata ``meta`` must serve."""
    if network == "mapping" and int(meta.get("c_dim", 0)) > 0:
        return MAPPING_CONDITIONAL
    return SIGNATURES[network]


# Name of the repository-level metadata file written by export/ and read by the gateway.
METADATA_FILE = "stylegate.json"

# -- seeds -------------------------------------------------------------------------------

MAX_SEED = 2**32 - 1  # numpy RandomState seeds


def z_from_seed(seed: int, z_dim: int) -> np.ndarray:
    """The latent z [z_dim] of a seed: the one rule, so a seed names the same image in
    gan/generate.py, the benchmarks and the gateway. ValueError outside [0, MAX_SEED]."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed} is outside [0, {MAX_SEED}]")
    # Re-seeding one generator per thread draws the same numbers as a new
    # RandomState(seed) at a tenth of the cost (17 vs 190 us): a 64-seed Generate parses
    # on the event loop.
    rng = getattr(_seeded, "rng", None)
    if rng is None:
        rng = _seeded.rng = np.random.RandomState()
    rng.seed(seed)
    return rng.standard_normal(z_dim).astype(np.float32)


_seeded = threading.local()


# -- checking what a backend serves ------------------------------------------------------

# onnxruntime's element type names -> the Triton names the contract uses.
ONNX_TO_TRITON = {
    "tensor(float)": "FP32",
    "tensor(float16)": "FP16",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
}

# A served tensor as a backend reports it: (dtype, full shape with the batch dim first,
# -1 for a dynamic dim).
Served = Mapping[str, tuple[str, Sequence[int]]]


def check_served(
    network: str, meta: Mapping[str, int], *, inputs: Served, outputs: Served
) -> list[str]:
    """Differences between a served model and the signature ``network`` must have for a
    generator with metadata ``meta``: one line per tensor at fault, empty when they match.
    Both backends run this at start-up (Triton from its model metadata, the embedded
    backend from the onnxruntime session), so a model that loads is a model that fits."""
    sig = signature(network, meta)
    problems = []
    for kind, specs, served in (
        ("input", sig.inputs, inputs),
        ("output", sig.outputs, outputs),
    ):
        for spec in specs:
            got = served.get(spec.name)
            if got is None:
                problems.append(f"{kind} {spec.name!r} is missing (served: {sorted(served)})")
                continue
            dtype, shape = got[0], [int(d) for d in got[1]]
            if dtype != spec.dtype:
                problems.append(f"{kind} {spec.name!r} has dtype {dtype}, expected {spec.dtype}")
            want = [-1, *spec.shape(meta)]
            if shape != want:
                problems.append(
                    f"{kind} {spec.name!r} has shape {shape}, expected {want} "
                    f"([batch, {', '.join(map(str, spec.dims))}])"
                )
        if kind == "input":
            known = {t.name for t in specs}
            problems += [
                f"input {name!r} is not in the {network} signature"
                for name in sorted(set(served) - known)
            ]
    return problems
