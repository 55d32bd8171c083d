"""A tiny numpy stand-in for the five served networks (linear generator, imperfect encoder,
exact gradients), for fast unit tests of the gateway's core without onnxruntime models.
Same signatures as service/signatures.py, so any code path that works here speaks the
real contract."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from stylegate.service.backends.base import Priority
from stylegate.service.metadata import RepositoryInfo, load_repository

Z, W, NUM_WS, RES, FC, FR = 8, 8, 4, 8, 2, 4


class FakeNetworks:
    def __init__(self, seed: int = 0, *, c_dim: int = 0):
        """``c_dim`` > 0: a class-conditional generator (its mapping also takes ``c``)."""
        rng = np.random.RandomState(seed)
        self.c_dim = c_dim
        d_ws, d_img, d_feat = NUM_WS * W, 3 * RES * RES, FC * FR * FR
        self.M = (rng.standard_normal((Z, W)) / np.sqrt(Z)).astype(np.float32)
        self.S = (rng.standard_normal((d_ws, d_img)) * 0.15).astype(np.float32)
        self.P = (rng.standard_normal((d_img, d_feat)) / np.sqrt(d_img)).astype(np.float32)
        pinv = np.linalg.pinv(self.S)
        self.E = (pinv + 0.3 * rng.standard_normal(pinv.shape) * np.abs(pinv).mean()).astype(
            np.float32
        )
        self.noise = (rng.standard_normal(d_img) * 0.01).astype(np.float32)
        self.w_avg = (rng.standard_normal(W) * 0.1).astype(np.float32)
        self.C = rng.standard_normal((max(c_dim, 1), W)).astype(np.float32)  # class embedding
        self.calls: dict[str, int] = {}
        self.seen: dict[str, dict[str, np.ndarray]] = {}  # model -> its last inputs

    def metadata(self) -> dict:
        base = {
            "description": "fake linear generator",
            "resolution": RES,
            "num_ws": NUM_WS,
            "w_dim": W,
            "z_dim": Z,
            "feature_channels": FC,
            "feature_resolution": FR,
            "layer_resolutions": [4, 4, 8, 8],
            "w_avg": self.w_avg.tolist(),
            "attributes": ["smile", "eyeglasses"],
        }
        if self.c_dim:
            base["c_dim"] = self.c_dim
        rng = np.random.RandomState(1)
        dirs = {}
        for i, (name, method) in enumerate(
            [("smile", "interfacegan"), ("eyeglasses", "interfacegan"), ("sefa_0", "sefa")]
        ):
            v = rng.standard_normal(W)
            dirs[name] = {
                "method": method,
                "vector": (v / np.linalg.norm(v)).tolist(),
                "std": 1.5,
                "layers": [0, NUM_WS] if i != 2 else [0, 2],
            }
            if method == "interfacegan":
                dirs[name].update(attribute=name, accuracy=0.9)
        return {
            "format_version": 1,
            "default_generator": "base",
            "generators": {
                "base": {
                    **base,
                    "directions": dirs,
                    "models": {
                        "mapping": "mapping",
                        "synthesis": "synthesis",
                        "encoder": "encoder",
                        "features": "features",
                        "inversion_step": "inversion_step",
                    },
                },
                "blend": {
                    **base,
                    "directions": dirs,
                    "models": {"mapping": "mapping", "synthesis": "blend_synthesis"},
                },
            },
        }

    def write(self, root: Path) -> RepositoryInfo:
        root.mkdir(parents=True, exist_ok=True)
        (root / "stylegate.json").write_text(json.dumps(self.metadata()))
        return load_repository(root)

    # -- networks --------------------------------------------------------------------
    def synth(self, ws: np.ndarray, gain: np.ndarray, flip: bool = False) -> np.ndarray:
        x = ws.reshape(len(ws), -1) @ self.S + gain.reshape(-1, 1) * self.noise
        if flip:
            x = -x
        return x.reshape(len(ws), 3, RES, RES).astype(np.float32)

    def run(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls[model] = self.calls.get(model, 0) + 1
        self.seen[model] = inputs
        if model == "mapping":
            w = inputs["z"] @ self.M
            if self.c_dim:
                w = w + inputs["c"] @ self.C
            return {"w": w.astype(np.float32)}
        if model in ("synthesis", "blend_synthesis"):
            return {
                "image": self.synth(inputs["ws"], inputs["noise_gain"], model == "blend_synthesis")
            }
        if model == "encoder":
            x = inputs["image"].reshape(len(inputs["image"]), -1)
            return {"ws": (x @ self.E).reshape(-1, NUM_WS, W).astype(np.float32)}
        if model == "features":
            x = inputs["image"].reshape(len(inputs["image"]), -1)
            return {"features": (x @ self.P).reshape(-1, FC, FR, FR).astype(np.float32)}
        if model == "inversion_step":
            return self.step(**inputs)
        raise KeyError(model)

    def step(self, ws, target, target_features, loss_weights, mask):
        b = len(ws)
        wf = ws.reshape(b, -1).astype(np.float64)
        x = wf @ self.S + self.noise
        t = target.reshape(b, -1)
        m = np.broadcast_to(mask, target.shape).reshape(b, -1)
        d_img = x.shape[1]
        pix = np.mean(m * (x - t) ** 2, axis=1)
        g_x = 2 * m * (x - t) / d_img * loss_weights[:, :1]
        f = x @ self.P
        tf = target_features.reshape(b, -1)
        feat = np.mean((f - tf) ** 2, axis=1)
        g_x += (2 * (f - tf) / f.shape[1]) @ self.P.T * loss_weights[:, 1:2]
        resid = wf - x @ self.E
        dom = np.mean(resid**2, axis=1)
        ident = np.eye(wf.shape[1]) - self.S @ self.E
        g_w = g_x @ self.S.T + (2 * resid / wf.shape[1]) @ ident.T * loss_weights[:, 2:3]
        terms = np.stack([pix, feat, dom], axis=1)
        loss = np.sum(terms * loss_weights, axis=1, keepdims=True)
        return {
            "loss": loss.astype(np.float32),
            "loss_terms": terms.astype(np.float32),
            "grad": g_w.reshape(ws.shape).astype(np.float32),
            "image": x.reshape(target.shape).astype(np.float32),
        }


class FakeBackend:
    """Backend protocol over FakeNetworks; ``delay`` seconds per call (to test cancellation)."""

    name = "fake"

    def __init__(self, nets: FakeNetworks | None = None, *, delay: float = 0.0):
        self.nets = nets or FakeNetworks()
        self.delay = delay
        self.ready = False

    async def load(self) -> None:
        self.ready = True

    async def reload(self, repository) -> None:
        self.ready = True

    async def refresh_metrics(self) -> None:
        pass

    async def release_memory(self) -> None:
        pass

    async def healthy(self) -> bool:
        return self.ready

    async def infer(self, model, inputs, *, priority=Priority.INTERACTIVE, timeout=None):
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.nets.run(model, inputs)

    async def close(self) -> None:
        self.ready = False


def write_onnx_repository(root: Path, nets: FakeNetworks | None = None) -> RepositoryInfo:
    """The fake networks as real ONNX models (dynamic batch) in a model repository, so the
    EmbeddedBackend and its micro-batcher run real onnxruntime sessions in fast tests."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nets = nets or FakeNetworks()
    repo = nets.write(root)
    d_ws, d_img, d_feat = NUM_WS * W, 3 * RES * RES, FC * FR * FR
    f32 = TensorProto.FLOAT

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    def io(name, dims):
        return helper.make_tensor_value_info(name, f32, ["B", *dims])

    def save(model_name, nodes, inputs, outputs, inits):
        graph = helper.make_graph(nodes, model_name, inputs, outputs, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        path = root / model_name / "1"
        path.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path / "model.onnx"))

    n = helper.make_node
    shapes = {
        "s_ws": [-1, d_ws],
        "s_img": [-1, d_img],
        "s_image4": [-1, 3, RES, RES],
        "s_ws3": [-1, NUM_WS, W],
        "s_feat4": [-1, FC, FR, FR],
        "s_feat": [-1, d_feat],
    }
    shape_inits = [const(k, np.array(v, np.int64)) for k, v in shapes.items()]

    if nets.c_dim:  # the conditional mapping: w = z M + c C
        save(
            "mapping",
            [
                n("MatMul", ["z", "M"], ["wz"]),
                n("MatMul", ["c", "C"], ["wc"]),
                n("Add", ["wz", "wc"], ["w"]),
            ],
            [io("z", [Z]), io("c", [nets.c_dim])],
            [io("w", [W])],
            [const("M", nets.M), const("C", nets.C)],
        )
    else:
        save(
            "mapping",
            [n("MatMul", ["z", "M"], ["w"])],
            [io("z", [Z])],
            [io("w", [W])],
            [const("M", nets.M)],
        )
    for name, flip in (("synthesis", False), ("blend_synthesis", True)):
        nodes = [
            n("Reshape", ["ws", "s_ws"], ["wf"]),
            n("MatMul", ["wf", "S"], ["x0"]),
            n("Mul", ["noise_gain", "noise"], ["nz"]),
            n("Add", ["x0", "nz"], ["x1"]),
        ]
        nodes += [n("Neg", ["x1"], ["x2"])] if flip else [n("Identity", ["x1"], ["x2"])]
        nodes += [n("Reshape", ["x2", "s_image4"], ["image"])]
        save(
            name,
            nodes,
            [io("ws", [NUM_WS, W]), io("noise_gain", [1])],
            [io("image", [3, RES, RES])],
            [const("S", nets.S), const("noise", nets.noise[None])] + shape_inits,
        )
    save(
        "encoder",
        [
            n("Reshape", ["image", "s_img"], ["x"]),
            n("MatMul", ["x", "E"], ["wf"]),
            n("Reshape", ["wf", "s_ws3"], ["ws"]),
        ],
        [io("image", [3, RES, RES])],
        [io("ws", [NUM_WS, W])],
        [const("E", nets.E)] + shape_inits,
    )
    save(
        "features",
        [
            n("Reshape", ["image", "s_img"], ["x"]),
            n("MatMul", ["x", "P"], ["f"]),
            n("Reshape", ["f", "s_feat4"], ["features"]),
        ],
        [io("image", [3, RES, RES])],
        [io("features", [FC, FR, FR])],
        [const("P", nets.P)] + shape_inits,
    )

    ident = (np.eye(d_ws) - nets.S.astype(np.float64) @ nets.E).T.astype(np.float32)
    step_nodes = [
        n("Reshape", ["ws", "s_ws"], ["wf"]),
        n("MatMul", ["wf", "S"], ["x0"]),
        n("Add", ["x0", "noise"], ["x"]),
        n("Reshape", ["target", "s_img"], ["t"]),
        n("Expand", ["mask", "s_expand"], ["m4"]),
        n("Reshape", ["m4", "s_img"], ["m"]),
        n("Split", ["loss_weights", "split3"], ["lw_p", "lw_f", "lw_d"], axis=1),
        # pixel
        n("Sub", ["x", "t"], ["diff"]),
        n("Mul", ["m", "diff"], ["mdiff"]),
        n("Mul", ["mdiff", "diff"], ["sq"]),
        n("ReduceMean", ["sq"], ["pix"], axes=[1], keepdims=1),
        n("Mul", ["mdiff", "c_pix"], ["gxp0"]),
        n("Mul", ["gxp0", "lw_p"], ["gxp"]),
        # feature
        n("MatMul", ["x", "P"], ["f"]),
        n("Reshape", ["target_features", "s_feat"], ["tf"]),
        n("Sub", ["f", "tf"], ["fd"]),
        n("Mul", ["fd", "fd"], ["fsq"]),
        n("ReduceMean", ["fsq"], ["feat"], axes=[1], keepdims=1),
        n("Mul", ["fd", "c_feat"], ["gf0"]),
        n("MatMul", ["gf0", "PT"], ["gxf0"]),
        n("Mul", ["gxf0", "lw_f"], ["gxf"]),
        n("Add", ["gxp", "gxf"], ["gx"]),
        n("MatMul", ["gx", "ST"], ["gw_img"]),
        # domain
        n("MatMul", ["x", "E"], ["ex"]),
        n("Sub", ["wf", "ex"], ["resid"]),
        n("Mul", ["resid", "resid"], ["rsq"]),
        n("ReduceMean", ["rsq"], ["dom"], axes=[1], keepdims=1),
        n("Mul", ["resid", "c_dom"], ["gr0"]),
        n("MatMul", ["gr0", "IT"], ["gwd0"]),
        n("Mul", ["gwd0", "lw_d"], ["gwd"]),
        n("Add", ["gw_img", "gwd"], ["gw"]),
        n("Reshape", ["gw", "s_ws3"], ["grad"]),
        n("Concat", ["pix", "feat", "dom"], ["loss_terms"], axis=1),
        n("Mul", ["loss_terms", "loss_weights"], ["wterms"]),
        n("ReduceSum", ["wterms", "axis1"], ["loss"], keepdims=1),
        n("Reshape", ["x", "s_image4"], ["image"]),
    ]
    step_inits = shape_inits + [
        const("S", nets.S),
        const("ST", np.ascontiguousarray(nets.S.T)),
        const("P", nets.P),
        const("PT", np.ascontiguousarray(nets.P.T)),
        const("E", nets.E),
        const("IT", ident),
        const("noise", nets.noise[None]),
        const("c_pix", np.float32(2.0 / d_img)),
        const("c_feat", np.float32(2.0 / d_feat)),
        const("c_dom", np.float32(2.0 / d_ws)),
        const("split3", np.array([1, 1, 1], np.int64)),
        const("axis1", np.array([1], np.int64)),
        const("s_expand", np.array([1, 3, 1, 1], np.int64)),
    ]
    save(
        "inversion_step",
        step_nodes,
        [
            io("ws", [NUM_WS, W]),
            io("target", [3, RES, RES]),
            io("target_features", [FC, FR, FR]),
            io("loss_weights", [3]),
            io("mask", [1, RES, RES]),
        ],
        [
            io("loss", [1]),
            io("loss_terms", [3]),
            io("grad", [NUM_WS, W]),
            io("image", [3, RES, RES]),
        ],
        step_inits,
    )
    return repo
