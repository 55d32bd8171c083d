"""Procedural training data: seeded, labelled 64x64 cartoon faces in two styles.

No data set can be downloaded on the project's machines, so the GANs, the attribute
classifier and the encoder all learn from this renderer. Every attribute is sampled
independently and returned as a label, which gives the latent space semantic axes
that InterFaceGAN/SeFa/GANSpace can find, and lets tests check edits with a classifier.

Two styles of the same face: ``photo`` (soft shading, gradients) and ``woodblock``
(flat ink palette, thick outlines, paper grain), the transfer domain for layer swapping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Binary attributes the classifier predicts and the editing directions are named after.
ATTRIBUTES: tuple[str, ...] = (
    "smile",
    "eyeglasses",
    "eyes_open",
    "blond_hair",
    "dark_skin",
    "long_hair",
    "beard",
)
# Continuous attributes (regression heads): head yaw in [-1, 1].
REGRESSIONS: tuple[str, ...] = ("yaw",)

STYLES = ("photo", "woodblock")

_SKIN = [(250, 220, 196), (236, 188, 150), (176, 120, 84), (112, 72, 48)]
_HAIR = [(30, 26, 28), (96, 58, 30), (236, 200, 100), (184, 64, 30)]  # black brown blond red
_BLOND = 2
_BACKGROUNDS = [
    (90, 140, 220),
    (120, 200, 140),
    (230, 230, 235),
    (200, 110, 150),
    (60, 60, 80),
    (240, 190, 80),
    (150, 120, 210),
    (100, 190, 200),
]
_IRIS = [(60, 100, 180), (70, 130, 70), (90, 60, 30), (40, 40, 40)]
_LIPS = (180, 70, 80)
_FRAMES = [(20, 20, 20), (150, 30, 30), (30, 40, 140), (180, 150, 40)]

# Woodblock palette: a few flat inks; every fill is snapped to the nearest one.
_INKS = np.array(
    [
        (242, 230, 204),  # paper
        (226, 196, 150),  # light ochre
        (200, 146, 90),  # ochre
        (186, 62, 44),  # vermilion
        (46, 62, 110),  # indigo
        (82, 110, 150),  # pale indigo
        (30, 24, 24),  # sumi black
        (110, 140, 90),  # moss
        (150, 90, 60),  # umber
    ],
    dtype=np.int32,
)
_OUTLINE = (24, 20, 22)

_SS = 2  # supersampling factor: draw at 2x, downsample for antialiasing


@dataclasses.dataclass(frozen=True)
class FaceParams:
    """Everything that determines one face; labels are derived from it."""

    smile: bool
    eyeglasses: bool
    eyes_open: bool
    hair: int  # index into _HAIR
    skin: int  # index into _SKIN
    long_hair: bool
    beard: bool
    yaw: float  # [-1, 1]: features shift sideways, face narrows
    dx: float  # head offset in pixels (at 64px)
    dy: float
    scale: float  # head size factor
    background: int  # index into _BACKGROUNDS
    iris: int
    frame: int
    brow_tilt: float
    mouth_width: float
    grain_seed: int

    def labels(self) -> np.ndarray:
        """Binary labels in ATTRIBUTES order, float32 [len(ATTRIBUTES)]."""
        values = {
            "smile": self.smile,
            "eyeglasses": self.eyeglasses,
            "eyes_open": self.eyes_open,
            "blond_hair": self.hair == _BLOND,
            "dark_skin": self.skin >= 2,
            "long_hair": self.long_hair,
            "beard": self.beard,
        }
        return np.array([float(values[a]) for a in ATTRIBUTES], dtype=np.float32)


def sample_params(rng: np.random.Generator) -> FaceParams:
    """Draw every attribute independently."""
    return FaceParams(
        smile=bool(rng.random() < 0.5),
        eyeglasses=bool(rng.random() < 0.35),
        eyes_open=bool(rng.random() < 0.7),
        hair=int(rng.integers(len(_HAIR))),
        skin=int(rng.integers(len(_SKIN))),
        long_hair=bool(rng.random() < 0.5),
        beard=bool(rng.random() < 0.25),
        yaw=float(rng.uniform(-1.0, 1.0)),
        dx=float(rng.uniform(-3.0, 3.0)),
        dy=float(rng.uniform(-2.5, 2.5)),
        scale=float(rng.uniform(0.9, 1.08)),
        background=int(rng.integers(len(_BACKGROUNDS))),
        iris=int(rng.integers(len(_IRIS))),
        frame=int(rng.integers(len(_FRAMES))),
        brow_tilt=float(rng.uniform(-0.6, 0.6)),
        mouth_width=float(rng.uniform(0.8, 1.2)),
        grain_seed=int(rng.integers(2**31)),
    )


def _ink(color: tuple[int, int, int]) -> tuple[int, int, int]:
    d = ((_INKS - np.array(color)) ** 2).sum(axis=1)
    return tuple(int(c) for c in _INKS[int(np.argmin(d))])


def _shade(color, k: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, c * k))) for c in color)


def render(p: FaceParams, *, style: str = "photo", size: int = 64) -> np.ndarray:
    """Draw one face. Returns uint8 [size, size, 3]."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    wood = style == "woodblock"
    s = size * _SS / 64.0  # pixels per 64px-unit at the drawing resolution
    n = int(size * _SS)

    def col(c):
        return _ink(c) if wood else c

    outline = _OUTLINE if wood else None
    ow = max(1, round(1.6 * s)) if wood else 0

    bg = col(_BACKGROUNDS[p.background])
    img = Image.new("RGB", (n, n), bg)
    d = ImageDraw.Draw(img)
    if not wood:  # soft vertical gradient on the photo background
        top = np.array(_shade(bg, 1.15), dtype=np.float32)
        bot = np.array(_shade(bg, 0.8), dtype=np.float32)
        t = np.linspace(0, 1, n, dtype=np.float32)[:, None, None]
        grad = (top * (1 - t) + bot * t).repeat(n, axis=1).astype(np.uint8)
        img = Image.fromarray(grad)
        d = ImageDraw.Draw(img)

    cx = (32 + p.dx) * s
    cy = (34 + p.dy) * s
    hw = 14.5 * p.scale * (1 - 0.12 * abs(p.yaw)) * s  # face half-width narrows with yaw
    hh = 18.0 * p.scale * s
    shift = p.yaw * 5.0 * s  # features move towards the turned side

    def box(x0, y0, x1, y1):
        return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]

    hair = col(_HAIR[p.hair])
    skin = col(_SKIN[p.skin])

    # Hair behind the head (long hair falls to the shoulders).
    if p.long_hair:
        d.rounded_rectangle(
            box(cx - hw - 4 * s, cy - hh - 3 * s, cx + hw + 4 * s, cy + hh + 10 * s),
            radius=int(10 * s),
            fill=hair,
            outline=outline,
            width=ow,
        )
    # Neck and shoulders.
    d.rectangle(
        box(cx - 5 * s, cy + hh - 4 * s, cx + 5 * s, n),
        fill=_shade(skin, 0.85) if not wood else skin,
        outline=outline,
        width=ow,
    )
    shirt = col(_BACKGROUNDS[(p.background + 3) % len(_BACKGROUNDS)])
    d.ellipse(
        box(cx - 22 * s, cy + hh + 2 * s, cx + 22 * s, cy + hh + 30 * s),
        fill=shirt,
        outline=outline,
        width=ow,
    )
    # Ears.
    for side in (-1, 1):
        ex = cx + side * hw + shift * 0.3
        d.ellipse(
            box(ex - 3 * s, cy - 3 * s, ex + 3 * s, cy + 5 * s),
            fill=skin,
            outline=outline,
            width=ow,
        )
    # Face.
    d.ellipse(box(cx - hw, cy - hh, cx + hw, cy + hh), fill=skin, outline=outline, width=ow)
    if not wood:  # cheek shading on the side turned away
        shade_x = cx - np.sign(p.yaw) * hw * 0.55 if abs(p.yaw) > 0.15 else None
        if shade_x is not None:
            d.ellipse(
                box(shade_x - 6 * s, cy - 4 * s, shade_x + 6 * s, cy + 12 * s),
                fill=_shade(skin, 0.93),
            )
    # Beard.
    if p.beard:
        d.chord(
            box(cx - hw * 0.95, cy - hh * 0.2, cx + hw * 0.95, cy + hh * 1.02),
            10,
            170,
            fill=_shade(hair, 1.0 if wood else 0.9),
            outline=outline,
            width=ow,
        )
    # Hair on top (fringe).
    d.chord(
        box(cx - hw - 1.5 * s, cy - hh - 3 * s, cx + hw + 1.5 * s, cy + hh * 0.35),
        180,
        360,
        fill=hair,
        outline=outline,
        width=ow,
    )

    # Eyes.
    ey = cy - 2.5 * s
    eye_dx = 6.0 * s
    for side in (-1, 1):
        ex = cx + shift + side * eye_dx
        if p.eyes_open:
            d.ellipse(
                box(ex - 3.2 * s, ey - 2.2 * s, ex + 3.2 * s, ey + 2.2 * s),
                fill=(250, 250, 250),
                outline=outline or (60, 40, 40),
                width=max(1, ow),
            )
            ix = ex + p.yaw * 1.0 * s
            d.ellipse(
                box(ix - 1.6 * s, ey - 1.6 * s, ix + 1.6 * s, ey + 1.6 * s), fill=col(_IRIS[p.iris])
            )
            d.ellipse(
                box(ix - 0.7 * s, ey - 0.7 * s, ix + 0.7 * s, ey + 0.7 * s), fill=(10, 10, 10)
            )
        else:
            d.arc(
                box(ex - 3.2 * s, ey - 2.5 * s, ex + 3.2 * s, ey + 1.5 * s),
                20,
                160,
                fill=(40, 25, 25),
                width=max(1, int(1.1 * s)),
            )
        # Brow.
        by = ey - 4.5 * s
        tilt = p.brow_tilt * side * 1.5 * s
        d.line(
            [ex - 3.5 * s, by + tilt, ex + 3.5 * s, by - tilt],
            fill=_shade(hair, 0.8),
            width=max(1, int(1.3 * s)),
        )
    # Glasses.
    if p.eyeglasses:
        fc = col(_FRAMES[p.frame])
        fw = max(2, int(1.1 * s)) + (ow // 2)
        for side in (-1, 1):
            ex = cx + shift + side * eye_dx
            d.rounded_rectangle(
                box(ex - 4.6 * s, ey - 3.6 * s, ex + 4.6 * s, ey + 3.6 * s),
                radius=int(2 * s),
                outline=fc,
                width=fw,
            )
        d.line(
            [cx + shift - 1.4 * s, ey - 0.5 * s, cx + shift + 1.4 * s, ey - 0.5 * s],
            fill=fc,
            width=fw,
        )
    # Nose.
    nx = cx + shift * 1.2
    d.line(
        [nx, cy + 0.5 * s, nx + 1.8 * s * (1 if p.yaw >= 0 else -1), cy + 5 * s, nx, cy + 5.5 * s],
        fill=_shade(skin, 0.7),
        width=max(1, int(1.0 * s)),
    )
    # Mouth.
    my = cy + 9.5 * s
    mw = 5.5 * p.mouth_width * s
    mx = cx + shift
    if p.smile:
        d.chord(
            box(mx - mw, my - 3.0 * s, mx + mw, my + 4.0 * s),
            0,
            180,
            fill=col(_LIPS),
            outline=outline or (120, 40, 50),
            width=max(1, ow),
        )
        d.chord(
            box(mx - mw * 0.8, my - 2.0 * s, mx + mw * 0.8, my + 2.0 * s),
            0,
            180,
            fill=(250, 250, 250),
        )
    else:
        d.line(
            [mx - mw * 0.8, my + 0.5 * s, mx + mw * 0.8, my + 0.5 * s],
            fill=col(_LIPS),
            width=max(2, int(1.4 * s)),
        )

    if not wood:
        img = img.filter(ImageFilter.GaussianBlur(radius=0.4 * s))
    img = img.resize((size, size), Image.BOX)
    out = np.asarray(img, dtype=np.uint8)
    if wood:
        out = _paper_grain(out, p.grain_seed)
    return out


def _paper_grain(img: np.ndarray, seed: int) -> np.ndarray:
    """Multiplicative fibre noise: horizontal streaks plus fine speckle."""
    rng = np.random.default_rng(seed)
    h, w, _ = img.shape
    streak = rng.normal(0, 0.045, size=(h, 1)) + rng.normal(0, 0.02, size=(h, w))
    speckle = rng.normal(0, 0.03, size=(h // 2, w // 2)).repeat(2, 0).repeat(2, 1)
    g = 1.0 + streak + speckle
    return np.clip(img.astype(np.float32) * g[..., None], 0, 255).astype(np.uint8)


def render_batch(
    seeds: Sequence[int] | np.ndarray, *, style: str = "photo", size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one face per seed.

    Returns (images uint8 [N, H, W, 3], labels float32 [N, len(ATTRIBUTES)], yaw float32 [N]).
    The same seed gives the same face in both styles.
    """
    params = [sample_params(np.random.default_rng(int(s))) for s in seeds]
    images = np.stack([render(p, style=style, size=size) for p in params])
    labels = np.stack([p.labels() for p in params])
    yaw = np.array([p.yaw for p in params], dtype=np.float32)
    return images, labels, yaw


def to_tensor_range(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float32 [N, 3, H, W] in [-1, 1], the networks' image range."""
    return (images.astype(np.float32).transpose(0, 3, 1, 2) / 127.5) - 1.0


# Seeds at or above this are held out: training never draws them.
HELDOUT_SEED_BASE = 1_000_000_000


def training_batches(
    batch_size: int, *, seed: int, style: str = "photo", size: int = 64
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Endless stream of (images [-1,1] [N,3,H,W], labels, yaw), reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    while True:
        seeds = rng.integers(0, HELDOUT_SEED_BASE, size=batch_size)
        images, labels, yaw = render_batch(seeds, style=style, size=size)
        yield to_tensor_range(images), labels, yaw


def heldout_seeds(n: int) -> np.ndarray:
    """Seeds of held-out faces (never seen in training) for quality measurements."""
    return np.arange(HELDOUT_SEED_BASE, HELDOUT_SEED_BASE + n)
