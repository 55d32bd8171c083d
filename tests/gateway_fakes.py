"""A tiny numpy stand-in for the five served networks (linear generator, imperfect encoder,
exact gradients), for fast unit tests of the gateway's core without onnxruntime models.
Same signatures as service/signatures.py, so any code path that works here speaks the
real contract."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from service.backends.base import Priority
from service.metadata import RepositoryInfo, load_repository

Z, W, NUM_WS, RES, FC, FR = 8, 8, 4, 8, 2, 4


class FakeNetworks:
    def __init__(self, seed: int = 0):
        rng = np.random.RandomState(seed)
        d_ws, d_img, d_feat = NUM_WS * W, 3 * RES * RES, FC * FR * FR
        self.M = (rng.standard_normal((Z, W)) / np.sqrt(Z)).astype(np.float32)
        self.S = (rng.standard_normal((d_ws, d_img)) * 0.15).astype(np.float32)
        self.P = (rng.standard_normal((d_img, d_feat)) / np.sqrt(d_img)).astype(np.float32)
        pinv = np.linalg.pinv(self.S)
        self.E = (pinv + 0.3 * rng.standard_normal(pinv.shape) * np.abs(pinv).mean()).astype(np.float32)
        self.noise = (rng.standard_normal(d_img) * 0.01).astype(np.float32)
        self.w_avg = (rng.standard_normal(W) * 0.1).astype(np.float32)
        self.calls: dict[str, int] = {}

    def metadata(self) -> dict:
        base = {
            "description": "fake linear generator", "resolution": RES, "num_ws": NUM_WS,
            "w_dim": W, "z_dim": Z, "feature_channels": FC, "feature_resolution": FR,
            "layer_resolutions": [4, 4, 8, 8], "w_avg": self.w_avg.tolist(),
            "attributes": ["smile", "eyeglasses"],
        }
        rng = np.random.RandomState(1)
        dirs = {}
        for i, (name, method) in enumerate([("smile", "interfacegan"), ("eyeglasses", "interfacegan"),
                                            ("sefa_0", "sefa")]):
            v = rng.standard_normal(W)
            dirs[name] = {"method": method, "vector": (v / np.linalg.norm(v)).tolist(), "std": 1.5,
                          "layers": [0, NUM_WS] if i != 2 else [0, 2]}
            if method == "interfacegan":
                dirs[name].update(attribute=name, accuracy=0.9)
        return {
            "format_version": 1,
            "default_generator": "base",
            "generators": {
                "base": {**base, "directions": dirs, "models": {
                    "mapping": "mapping", "synthesis": "synthesis", "encoder": "encoder",
                    "features": "features", "inversion_step": "inversion_step"}},
                "blend": {**base, "directions": dirs, "models": {
                    "mapping": "mapping", "synthesis": "blend_synthesis"}},
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
        if model == "mapping":
            return {"w": (inputs["z"] @ self.M).astype(np.float32)}
        if model in ("synthesis", "blend_synthesis"):
            return {"image": self.synth(inputs["ws"], inputs["noise_gain"], model == "blend_synthesis")}
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

    async def healthy(self) -> bool:
        return self.ready

    async def infer(self, model, inputs, *, priority=Priority.INTERACTIVE, timeout=None):
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.nets.run(model, inputs)

    async def close(self) -> None:
        self.ready = False
