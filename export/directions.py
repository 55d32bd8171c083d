"""Named latent directions in W, computed at export time: SeFa, GANSpace, InterFaceGAN.

Every direction is a unit vector in W with the std of sampled W projected on it and a
default layer range ``[start, stop)`` over the num_ws axis (docs/model-repository.md).
An attribute direction's default layer range and ``condition_on`` are chosen by measuring
its edits on generated faces with the classifier (``edit_defaults``).
"""

from __future__ import annotations

import dataclasses
import functools

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
    batch: int = 50  # images per forward pass (small batches run faster on CPU)
    # Default edits of attribute directions (edit_defaults): generated faces the edits are
    # measured on (0: no measurement; every layer, no conditioning), the strength in stds
    # (the gateway's unit), and the |cosine| from which another attribute direction is a
    # candidate to condition on, in units of 1/sqrt(w_dim) (the typical |cosine| of two
    # random directions).
    edit_faces: int = 96
    edit_strength: float = 3.0
    condition_cosine: float = 2.0


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


# --------------------------------------------------------------------------- default edits

# The goal of a named edit at strength 3: its attribute flips on >= 90% of faces, any other
# on <= 5%. A default layer range may give up flips down to the goal, or FLIP_SLACK under
# the best range's flip rate when none reaches it, for side effects at least SIDE_MARGIN
# lower (smaller differences are within the noise of ~100 faces and change nothing).
FLIP_TARGET = 0.9
FLIP_SLACK = 0.05
SIDE_MARGIN = 0.05


@dataclasses.dataclass(frozen=True)
class EditFigures:
    """An attribute edit measured on generated faces, each pushed to the other side."""

    flips: np.ndarray  # [num_binary] faces on which each binary label flipped
    faces: int
    attribute: int  # the edited attribute's index

    @property
    def flip_rate(self) -> float:
        return float(self.flips[self.attribute]) / self.faces

    @property
    def max_other(self) -> float:
        """The largest share of faces on which any one other attribute flipped."""
        others = np.delete(self.flips, self.attribute)
        return float(others.max()) / self.faces if len(others) else 0.0

    def __add__(self, other: EditFigures) -> EditFigures:  # the same edit on more faces
        return EditFigures(self.flips + other.flips, self.faces + other.faces, self.attribute)

    def record(self) -> dict:
        return {
            "faces": self.faces,
            "flip_rate": round(self.flip_rate, 4),
            "max_other_flip_rate": round(self.max_other, 4),
        }


def layer_range_candidates(layer_resolutions: list[int]) -> dict[str, tuple[int, int]]:
    """Candidate default layer ranges of an attribute edit: "all" first, then each
    coarse/middle/fine group and each run of adjacent groups ("coarse+middle")."""
    groups = list(layer_groups(layer_resolutions).items())
    out = {"all": (0, len(layer_resolutions))}
    for i in range(len(groups)):
        for j in range(i, len(groups)):
            layers = (groups[i][1][0], groups[j][1][1])
            if layers not in out.values():
                out["+".join(name for name, _ in groups[i : j + 1])] = layers
    return out


def flip_floor(figures: dict[str, EditFigures]) -> float:
    """The flip rate a default edit must reach: the goal, or FLIP_SLACK under the best."""
    return min(FLIP_TARGET, max(f.flip_rate for f in figures.values()) - FLIP_SLACK)


def choose_edit(figures: dict[str, EditFigures]) -> str:
    """Among the candidates reaching ``flip_floor``, those whose side effects (the largest
    share of faces on which any one other attribute flipped) are within SIDE_MARGIN of the
    fewest; of these the one with the most flips, on a tie the earlier ("all" first)."""
    floor = flip_floor(figures)
    eligible = [c for c, f in figures.items() if f.flip_rate >= floor]
    least = min(figures[c].max_other for c in eligible)
    near = [c for c in eligible if figures[c].max_other <= least + SIDE_MARGIN + 1e-9]
    return max(near, key=lambda c: figures[c].flip_rate)  # max keeps the first of ties


@dataclasses.dataclass(frozen=True)
class Faces:
    """Generated faces that edits are measured on."""

    w: torch.Tensor  # [n, w_dim]
    labels: np.ndarray  # [n, num_binary] bool, the classifier's binary outputs

    def __len__(self) -> int:
        return len(self.w)

    def part(self, start: int, stop: int) -> Faces:
        return Faces(self.w[start:stop], self.labels[start:stop])


@torch.no_grad()
def sample_faces(
    G: N.Generator, classifier: N.AttributeClassifier, n: int, *, seed: int, batch: int
) -> Faces:
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    w = G.mapping(z)
    labels = [
        _labels(classifier, G.synthesis(w[i : i + batch, None].expand(-1, G.num_ws, -1)))
        for i in range(0, n, batch)
    ]
    return Faces(w, np.concatenate(labels))


def _labels(classifier: N.AttributeClassifier, img: torch.Tensor) -> np.ndarray:
    return (classifier(img)[:, : classifier.num_binary] > 0).numpy()


@torch.no_grad()
def measure_edit(
    G: N.Generator,
    classifier: N.AttributeClassifier,
    faces: Faces,
    vector: np.ndarray,
    layers: tuple[int, int],
    *,
    attribute: int,  # the classifier's binary output the edit is for
    amount: float,  # W units: strength * std
    batch: int,
) -> EditFigures:
    """Push every face across ``attribute``'s boundary as the gateway edits (float32
    ``ws[:, start:stop] += sign * amount * vector``, the sign towards the other side) and
    count the faces on which each binary label flipped."""
    v = torch.from_numpy(np.asarray(vector, dtype=np.float32))
    step = np.where(faces.labels[:, attribute], -amount, amount).astype(np.float32)
    step = torch.from_numpy(step)[:, None, None] * v  # [n, 1, w_dim]
    after = []
    for i in range(0, len(faces), batch):
        ws = faces.w[i : i + batch, None].repeat(1, G.num_ws, 1)  # [B, num_ws, w_dim]
        ws[:, layers[0] : layers[1]] += step[i : i + batch]
        after.append(_labels(classifier, G.synthesis(ws)))
    flips = (np.concatenate(after) != faces.labels).sum(0)
    return EditFigures(flips, len(faces), attribute)


def edit_defaults(
    G: N.Generator,
    classifier: N.AttributeClassifier,
    attributes: tuple[str, ...],
    entries: dict[str, dict],
    *,
    options: DirectionOptions = DEFAULT_OPTIONS,
) -> dict[str, dict]:
    """Default layer range and ``condition_on`` of each binary attribute's direction (the
    ``entries`` named by ``attributes``, the classifier's binary outputs in order), chosen
    by measurement; returns the fields to add to each entry.

    Every face of a fresh generated sample is pushed to the other side of the attribute at
    ``edit_strength`` stds, as the gateway applies a named edit, and relabelled.

    - Layer range: each of ``layer_range_candidates`` is measured on the first half of the
      faces; those reaching the flip floor there also on the second half, and
      ``choose_edit`` picks among them.
    - Conditioning: the other attribute directions whose |cosine| with this one reaches
      ``condition_cosine / sqrt(w_dim)`` are projected out and the edit is measured again on
      the chosen range; they become the default ``condition_on`` when that still reaches
      the flip floor and lowers the side effects by at least SIDE_MARGIN.
    """
    faces = sample_faces(
        G, classifier, options.edit_faces, seed=options.seed + 2, batch=options.batch
    )
    half = len(faces) // 2
    first, second = faces.part(0, half), faces.part(half, len(faces))
    candidates = layer_range_candidates(list(G.synthesis.layer_resolutions))
    vectors = {a: np.asarray(entries[a]["vector"], dtype=np.float32) for a in attributes}
    threshold = options.condition_cosine / np.sqrt(G.w_dim)
    out = {}
    for k, name in enumerate(attributes):
        amount = options.edit_strength * entries[name]["std"]
        measure = functools.partial(
            measure_edit, G, classifier, attribute=k, amount=amount, batch=options.batch
        )
        figures = {c: measure(first, vectors[name], r) for c, r in candidates.items()}
        floor = flip_floor(figures)
        finalists = [c for c, f in figures.items() if f.flip_rate >= floor]
        for c in finalists:
            figures[c] = figures[c] + measure(second, vectors[name], candidates[c])
        finals = {c: figures[c] for c in finalists}
        chosen = choose_edit(finals)
        best = figures[chosen]
        correlated = [
            a
            for a in attributes
            if a != name and abs(float(vectors[a] @ vectors[name])) >= threshold
        ]
        conditioned = None
        if correlated:
            vector = condition(vectors[name], [vectors[a] for a in correlated])
            conditioned = measure(faces, vector.astype(np.float32), candidates[chosen])
        adopt = (
            conditioned is not None
            and conditioned.flip_rate >= flip_floor(finals)
            and conditioned.max_other <= best.max_other - SIDE_MARGIN + 1e-9
        )
        final = conditioned if adopt else best
        measured = {
            "strength": options.edit_strength,
            **final.record(),
            "others": {
                a: round(float(final.flips[j]) / final.faces, 4)
                for j, a in enumerate(attributes)
                if j != k
            },
            "layer_ranges": {
                c: {"layers": list(candidates[c]), **f.record()} for c, f in figures.items()
            },
        }
        if conditioned is not None:
            measured["conditioned"] = {"on": correlated, **conditioned.record()}
        out[name] = {
            "layers": list(candidates[chosen]),
            "condition_on": correlated if adopt else [],
            "measured": measured,
        }
    return out


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
    named "yaw" is published as "pose". The binary attributes' directions get a measured
    default layer range and ``condition_on`` (``edit_defaults``) unless ``edit_faces`` is 0;
    the others keep all layers and no conditioning.
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
        if options.edit_faces > 0 and attributes:
            defaults = edit_defaults(G, classifier, tuple(attributes), out, options=options)
            for name, fields in defaults.items():
                out[name].update(fields)

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
