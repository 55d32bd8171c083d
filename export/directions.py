"""Named latent directions in W, computed at export time: SeFa, GANSpace, InterFaceGAN.

Every direction is a unit vector in W with the std of sampled W projected on it and a
default layer range ``[start, stop)`` over the num_ws axis (docs/model-repository.md).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from stylegate.gan import networks as N

# StyleGAN's coarse / middle / fine split by layer resolution.
LAYER_GROUPS: dict[str, tuple[int, int]] = {
    "coarse": (4, 8),
    "middle": (16, 32),
    "fine": (64, 1 << 30),
}


@dataclasses.dataclass(frozen=True)
class DirectionOptions:
    """How many samples and directions to compute (defaults keep the shipped export short)."""

    num_w_samples: int = 10_000  # sampled W for GANSpace and every direction's std
    num_image_samples: int = 2_000  # generated images labelled by the classifier (InterFaceGAN)
    label_fraction: float = 0.15  # top / bottom fraction of scores taken as positives / negatives
    sefa_components: int = 5  # SeFa directions over all layers
    sefa_group_components: int = 3  # SeFa directions per coarse/middle/fine group
    ganspace_components: int = 10
    seed: int = 0
    batch: int = 250


DEFAULT_OPTIONS = DirectionOptions()


# --------------------------------------------------------------------------- sampling


@torch.no_grad()
def sample_w(G: N.Generator, n: int, *, seed: int = 0, batch: int = 1000) -> np.ndarray:
    """n samples of W = mapping(z), z ~ N(0, I). [n, w_dim] float64."""
    gen = torch.Generator().manual_seed(seed)
    out = [
        G.mapping(torch.randn(min(batch, n - i), G.z_dim, generator=gen))
        for i in range(0, n, batch)
    ]
    return torch.cat(out).double().numpy()


def projected_std(w: np.ndarray, vector: np.ndarray) -> float:
    return float(np.std(w @ vector))


def layer_groups(layer_resolutions: list[int]) -> dict[str, tuple[int, int]]:
    """Layer ranges ``[start, stop)`` of the coarse/middle/fine groups that are not empty."""
    out = {}
    for name, (lo, hi) in LAYER_GROUPS.items():
        idx = [i for i, r in enumerate(layer_resolutions) if lo <= r <= hi]
        if idx:
            out[name] = (idx[0], idx[-1] + 1)
    return out


# --------------------------------------------------------------------------- SeFa


def style_affines(synthesis: N.SynthesisNetwork) -> list[list[N.FullyConnected]]:
    """For each ws index, the style affines that read it (convs and the toRGB sharing it)."""
    per_ws: list[list[N.FullyConnected]] = [[] for _ in range(synthesis.num_ws)]
    idx = 0
    for block in synthesis.blocks:
        i = idx
        for layer in (block.conv0, block.conv1):
            if layer is not None:
                per_ws[i].append(layer.conv.affine)
                i += 1
        per_ws[i].append(block.torgb.conv.affine)
        idx += block.num_conv
    return per_ws


def sefa(
    synthesis: N.SynthesisNetwork, layers: tuple[int, int], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form factorization (Shen & Zhou): top-k eigenvectors of A^T A, A the stacked
    style-affine weights of the layers in ``[start, stop)``, each style's row normalized.
    Returns (vectors [k, w_dim], eigenvalues [k])."""
    rows = []
    for affines in style_affines(synthesis)[layers[0] : layers[1]]:
        for fc in affines:
            a = (
                fc.weight.detach().double().numpy()
            )  # [styles, w_dim]; the gain scales all rows alike
            rows.append(a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12))
    a = np.concatenate(rows)
    evals, evecs = np.linalg.eigh(a.T @ a)
    order = np.argsort(evals)[::-1][:k]
    return _canonical_sign(evecs[:, order].T), evals[order]


def _canonical_sign(vectors: np.ndarray) -> np.ndarray:
    """Eigenvector signs are arbitrary; fix them (largest-magnitude entry positive) so the
    export is deterministic."""
    idx = np.argmax(np.abs(vectors), axis=1)
    signs = np.sign(vectors[np.arange(len(vectors)), idx])
    return vectors * signs[:, None]


# --------------------------------------------------------------------------- GANSpace


def ganspace(w: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of sampled W (Härkönen et al.). Returns (components [k, w_dim], std [k],
    explained variance ratio [k])."""
    centered = w - w.mean(0)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    var = s**2 / (len(w) - 1)
    return _canonical_sign(vt[:k]), np.sqrt(var[:k]), var[:k] / var.sum()


# --------------------------------------------------------------------------- InterFaceGAN


def attribute_scores(
    G: N.Generator, classifier: N.AttributeClassifier, n: int, *, seed: int, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """W of n generated samples and the classifier's outputs on their images
    (binary logits, then regressions). Returns (w [n, w_dim], scores [n, outputs])."""
    gen = torch.Generator().manual_seed(seed)
    ws, scores = [], []
    with torch.no_grad():
        for i in range(0, n, batch):
            w = G.mapping(torch.randn(min(batch, n - i), G.z_dim, generator=gen))
            img = G.synthesis(w[:, None].expand(-1, G.num_ws, -1), noise_mode="const")
            ws.append(w)
            scores.append(classifier(img))
    return torch.cat(ws).double().numpy(), torch.cat(scores).double().numpy()


def interfacegan(
    w: np.ndarray, score: np.ndarray, *, fraction: float, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Linear SVM boundary (Shen et al.) between the samples scoring in the top and the
    bottom ``fraction``. Returns (unit normal pointing to higher scores, held-out accuracy)."""
    from sklearn.svm import LinearSVC

    order = np.argsort(score)
    k = max(2, int(len(score) * fraction))
    neg, pos = order[:k], order[-k:]
    x = np.concatenate([w[neg], w[pos]])
    y = np.concatenate([np.zeros(k), np.ones(k)])
    perm = np.random.default_rng(seed).permutation(len(y))
    x, y = x[perm], y[perm]
    split = int(0.8 * len(y))
    mean = x[:split].mean(0)
    svm = LinearSVC(C=1.0, max_iter=20_000, random_state=seed)
    svm.fit(x[:split] - mean, y[:split])
    accuracy = float(svm.score(x[split:] - mean, y[split:]))
    normal = svm.coef_[0] / np.linalg.norm(svm.coef_[0])
    return normal, accuracy


def condition(direction: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """Conditional boundary (InterFaceGAN): remove from ``direction`` its components along
    ``others`` (orthogonalized first), so editing it leaves those attributes' scores alone.
    Returns a unit vector."""
    basis: list[np.ndarray] = []
    for o in others:
        v = np.asarray(o, dtype=np.float64)
        for b in basis:
            v = v - (v @ b) * b
        if np.linalg.norm(v) > 1e-8:
            basis.append(v / np.linalg.norm(v))
    d = np.asarray(direction, dtype=np.float64)
    for b in basis:
        d = d - (d @ b) * b
    return d / np.linalg.norm(d)


# --------------------------------------------------------------------------- all of them


def _entry(
    method: str, vector: np.ndarray, w: np.ndarray, layers: tuple[int, int], **extra
) -> dict:
    vector = vector / np.linalg.norm(vector)
    return {
        "method": method,
        "vector": [float(v) for v in vector.astype(np.float32)],
        "std": projected_std(w, vector),
        "layers": [int(layers[0]), int(layers[1])],
        **extra,
    }


def compute_directions(
    G: N.Generator,
    *,
    classifier: N.AttributeClassifier | None = None,
    attributes: tuple[str, ...] = (),
    regressions: tuple[str, ...] = (),
    options: DirectionOptions = DEFAULT_OPTIONS,
) -> dict[str, dict]:
    """Every named direction of one generator, as stylegate.json entries.

    ``attributes`` / ``regressions`` name the classifier's outputs in order (binary logits,
    then regressions); InterFaceGAN runs only when a classifier is given. A regression
    named "yaw" is published as "pose".
    """
    w = sample_w(G, options.num_w_samples, seed=options.seed, batch=1000)
    all_layers = (0, G.num_ws)
    out: dict[str, dict] = {}

    if classifier is not None:
        w_img, scores = attribute_scores(
            G, classifier, options.num_image_samples, seed=options.seed + 1, batch=options.batch
        )
        names = list(attributes) + ["pose" if r == "yaw" else r for r in regressions]
        for j, name in enumerate(names):
            normal, acc = interfacegan(
                w_img, scores[:, j], fraction=options.label_fraction, seed=options.seed
            )
            attr = attributes[j] if j < len(attributes) else regressions[j - len(attributes)]
            out[name] = _entry("interfacegan", normal, w, all_layers, attribute=attr, accuracy=acc)

    vecs, evals = sefa(G.synthesis, all_layers, options.sefa_components)
    for i, (v, e) in enumerate(zip(vecs, evals)):
        out[f"sefa_{i}"] = _entry("sefa", v, w, all_layers, eigenvalue=float(e))
    for group, layers in layer_groups(G.synthesis.layer_resolutions).items():
        vecs, evals = sefa(G.synthesis, layers, options.sefa_group_components)
        for i, (v, e) in enumerate(zip(vecs, evals)):
            out[f"sefa_{group}_{i}"] = _entry("sefa", v, w, layers, eigenvalue=float(e))

    comps, _, ratio = ganspace(w, options.ganspace_components)
    for i, (v, r) in enumerate(zip(comps, ratio)):
        out[f"ganspace_{i}"] = _entry("ganspace", v, w, all_layers, explained_variance=float(r))
    return out
