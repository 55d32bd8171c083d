"""Procedural training data: seeded, labelled 64x64 cartoon faces in two styles.

No data set can be downloaded on the project's machines, so the GANs, the attribute
classifier and the encoder all learn from this renderer. Every attribute is sampled
independently and returned as a label, which gives the latent space semantic axes
that InterFaceGAN/SeFa/GANSpace can find, and lets tests check edits with a classifier.

Two styles of the same face: ``photo`` (soft shading, gradients) and ``woodblock``
(flat ink palette, thick outlines, paper grain), the transfer domain for layer swapping.

Beyond the labelled attributes every face varies in what a model must not overfit to, so that
the models generalize to faces drawn by other hands (docs/design.md, "Renderer variation"):
head position and size, face proportions, eye spacing, height and size, mouth height, line
widths, jittered colours, and, in the photo style, a lighting ramp, mild blur, sensor noise
and JPEG artefacts.
"""

from __future__ import annotations

import dataclasses
import io
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
    # proportions and drawing (unlabelled variation)
    aspect: float = 1.0  # face height / width, relative
    eye_spacing: float = 1.0  # relative distance between the eyes
    eye_height: float = 0.0  # eye line offset in pixels (at 64px)
    eye_size: float = 1.0
    mouth_height: float = 0.0  # mouth offset in pixels
    line: float = 1.0  # line width factor (brows, nose, mouth, frames, outlines)
    palette_seed: int = -1  # colour jitter of every fill; -1: the base palette
    # photo style only: a lighting ramp and capture artefacts
    light_angle: float = 0.0  # radians: direction the light comes from
    light: float = 0.0  # ramp strength: brightness varies by +-light across the image
    blur: float = 0.0  # Gaussian radius in 64px pixels
    noise: float = 0.0  # sensor noise std, in 0..255 units
    jpeg: int = 0  # JPEG quality, 0: not compressed

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
        dx=float(rng.uniform(-5.0, 5.0)),
        dy=float(rng.uniform(-4.0, 4.0)),
        scale=float(rng.uniform(0.84, 1.14)),
        background=int(rng.integers(len(_BACKGROUNDS))),
        iris=int(rng.integers(len(_IRIS))),
        frame=int(rng.integers(len(_FRAMES))),
        brow_tilt=float(rng.uniform(-0.6, 0.6)),
        mouth_width=float(rng.uniform(0.8, 1.2)),
        grain_seed=int(rng.integers(2**31)),
        aspect=float(rng.uniform(0.88, 1.14)),
        eye_spacing=float(rng.uniform(0.82, 1.22)),
        eye_height=float(rng.uniform(-1.8, 1.8)),
        eye_size=float(rng.uniform(0.8, 1.25)),
        mouth_height=float(rng.uniform(-1.5, 2.0)),
        line=float(rng.uniform(0.6, 1.8)),
        palette_seed=int(rng.integers(2**31)),
        light_angle=float(rng.uniform(0, 2 * np.pi)),
        light=float(rng.uniform(0.0, 0.22)),
        blur=float(rng.uniform(0.1, 0.6)) if rng.random() < 0.35 else 0.0,
        noise=float(rng.uniform(1.0, 6.0)) if rng.random() < 0.35 else 0.0,
        jpeg=int(rng.integers(35, 91)) if rng.random() < 0.35 else 0,
    )


# A face with every unlabelled variation at its neutral value (tests and figures that need
# features at known places): ``dataclasses.replace(params, **NEUTRAL)``.
NEUTRAL: dict[str, float | int] = {
    "yaw": 0.0,
    "dx": 0.0,
    "dy": 0.0,
    "scale": 1.0,
    "aspect": 1.0,
    "eye_spacing": 1.0,
    "eye_height": 0.0,
    "eye_size": 1.0,
    "mouth_height": 0.0,
    "line": 1.0,
    "palette_seed": -1,
    "light": 0.0,
    "blur": 0.0,
    "noise": 0.0,
    "jpeg": 0,
}


class _Palette:
    """Every fill colour of one face, jittered by ``palette_seed`` in ways that keep the
    labels true: skin keeps its tone class, hair its colour, backgrounds stay backgrounds."""

    def __init__(self, p: FaceParams):
        rng = np.random.default_rng(p.palette_seed) if p.palette_seed >= 0 else None

        def jitter(color, gain: float, shift: float):
            if rng is None:
                return tuple(color)
            k = rng.uniform(1 - gain, 1 + gain)
            d = rng.uniform(-shift, shift, size=3)
            return tuple(int(np.clip(c * k + e, 0, 255)) for c, e in zip(color, d))

        self.background = jitter(_BACKGROUNDS[p.background], 0.2, 25)
        self.shirt = jitter(_BACKGROUNDS[(p.background + 3) % len(_BACKGROUNDS)], 0.2, 30)
        self.skin = jitter(_SKIN[p.skin], 0.07, 8)
        self.hair = jitter(_HAIR[p.hair], 0.12, 10)
        self.iris = jitter(_IRIS[p.iris], 0.2, 20)
        self.frame = jitter(_FRAMES[p.frame], 0.2, 25)
        self.lips = jitter(_LIPS, 0.12, 15)


def _ink(color: tuple[int, int, int]) -> tuple[int, int, int]:
    d = ((_INKS - np.array(color)) ** 2).sum(axis=1)
    return tuple(int(c) for c in _INKS[int(np.argmin(d))])


def _shade(color, k: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, c * k))) for c in color)


BACKDROPS = ("stripes", "rays", "checks", "dots", "rings", "split")


def backdrop(rng: np.random.Generator, n: int) -> np.ndarray:
    """A patterned background of ``n`` x ``n`` pixels, uint8 [n, n, 3]: stripes at any angle,
    rays from a point, checks, a grid of dots, rings or a two-tone split, in two colours of
    random hue and contrast. Drawn behind a face instead of the photo style's gradient, it is
    variation an encoder meets in users' drawings and the generator was not trained on."""
    kind = BACKDROPS[int(rng.integers(len(BACKDROPS)))]
    y, x = (np.mgrid[0:n, 0:n].astype(np.float32) + 0.5) / n - 0.5
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.06, 0.25)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    cx, cy = rng.uniform(-0.2, 0.2, size=2)
    if kind == "stripes":
        mask = np.mod(u / period, 1.0) < rng.uniform(0.3, 0.7)
    elif kind == "rays":
        count = int(rng.integers(6, 20))
        mask = np.mod((np.arctan2(y - cy, x - cx) + angle) * count / np.pi, 2.0) < 1.0
    elif kind == "checks":
        mask = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    elif kind == "dots":
        du, dv = np.mod(u / period, 1.0) - 0.5, np.mod(v / period, 1.0) - 0.5
        mask = du**2 + dv**2 < rng.uniform(0.04, 0.16)
    elif kind == "rings":
        mask = np.mod(np.hypot(x - cx, y - cy) / period, 1.0) < 0.5
    else:  # split
        mask = u > rng.uniform(-0.3, 0.3)

    def colour() -> np.ndarray:  # a grey level plus some chroma
        return rng.uniform(50, 235) + rng.uniform(-1, 1, size=3) * rng.uniform(0, 60)

    base = colour()
    other = base + rng.choice([-1.0, 1.0]) * rng.uniform(15, 80) + rng.normal(0, 15, size=3)
    out = np.where(mask[..., None], other, base)
    return np.clip(out, 0, 255).astype(np.uint8)


def render(
    p: FaceParams, *, style: str = "photo", size: int = 64, pattern: np.ndarray | None = None
) -> np.ndarray:
    """Draw one face. Returns uint8 [size, size, 3]. ``pattern`` (photo style; uint8
    [size * _SS, size * _SS, 3], e.g. ``backdrop``) replaces the background gradient."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    wood = style == "woodblock"
    s = size * _SS / 64.0  # pixels per 64px-unit at the drawing resolution
    n = int(size * _SS)

    def col(c):
        return _ink(c) if wood else c

    pal = _Palette(p)
    lw = p.line  # line width factor
    outline = _OUTLINE if wood else None
    ow = max(1, round(1.6 * lw * s)) if wood else 0

    bg = col(pal.background)
    img = Image.new("RGB", (n, n), bg)
    d = ImageDraw.Draw(img)
    if not wood:  # soft vertical gradient on the photo background
        top = np.array(_shade(bg, 1.15), dtype=np.float32)
        bot = np.array(_shade(bg, 0.8), dtype=np.float32)
        t = np.linspace(0, 1, n, dtype=np.float32)[:, None, None]
        grad = (top * (1 - t) + bot * t).repeat(n, axis=1).astype(np.uint8)
        img = Image.fromarray(grad if pattern is None else pattern)
        d = ImageDraw.Draw(img)

    cx = (32 + p.dx) * s
    cy = (34 + p.dy) * s
    hw = 14.5 * p.scale * (1 - 0.12 * abs(p.yaw)) / p.aspect**0.5 * s  # narrows with yaw
    hh = 18.0 * p.scale * p.aspect**0.5 * s
    shift = p.yaw * 5.0 * s  # features move towards the turned side

    def box(x0, y0, x1, y1):
        return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]

    hair = col(pal.hair)
    skin = col(pal.skin)

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
    shirt = col(pal.shirt)
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
    ey = cy + (p.eye_height - 2.5) * s
    eye_dx = 6.0 * p.eye_spacing * s
    es = p.eye_size
    for side in (-1, 1):
        ex = cx + shift + side * eye_dx
        if p.eyes_open:
            d.ellipse(
                box(ex - 3.2 * es * s, ey - 2.2 * es * s, ex + 3.2 * es * s, ey + 2.2 * es * s),
                fill=(250, 250, 250),
                outline=outline or (60, 40, 40),
                width=max(1, ow, round(lw)),
            )
            ix = ex + p.yaw * 1.0 * s
            r = 1.6 * es * s
            d.ellipse(box(ix - r, ey - r, ix + r, ey + r), fill=col(pal.iris))
            r = 0.7 * es * s
            d.ellipse(box(ix - r, ey - r, ix + r, ey + r), fill=(10, 10, 10))
        else:
            d.arc(
                box(ex - 3.2 * es * s, ey - 2.5 * es * s, ex + 3.2 * es * s, ey + 1.5 * es * s),
                20,
                160,
                fill=(40, 25, 25),
                width=max(1, int(1.1 * lw * s)),
            )
        # Brow.
        by = ey - (2.3 + 2.2 * es) * s
        tilt = p.brow_tilt * side * 1.5 * s
        d.line(
            [ex - 3.5 * s, by + tilt, ex + 3.5 * s, by - tilt],
            fill=_shade(hair, 0.8),
            width=max(1, int(1.3 * lw * s)),
        )
    # Glasses.
    if p.eyeglasses:
        fc = col(pal.frame)
        fw = max(2, int(1.1 * lw * s)) + (ow // 2)
        gx, gy = (1.4 + 3.2 * es) * s, (1.4 + 2.2 * es) * s  # lens half-size around the eye
        for side in (-1, 1):
            ex = cx + shift + side * eye_dx
            d.rounded_rectangle(
                box(ex - gx, ey - gy, ex + gx, ey + gy),
                radius=int(2 * s),
                outline=fc,
                width=fw,
            )
        d.line(
            [cx + shift - eye_dx + gx, ey - 0.5 * s, cx + shift + eye_dx - gx, ey - 0.5 * s],
            fill=fc,
            width=fw,
        )
    # Nose.
    nx = cx + shift * 1.2
    d.line(
        [nx, cy + 0.5 * s, nx + 1.8 * s * (1 if p.yaw >= 0 else -1), cy + 5 * s, nx, cy + 5.5 * s],
        fill=_shade(skin, 0.7),
        width=max(1, int(1.0 * lw * s)),
    )
    # Mouth.
    my = cy + (9.5 + p.mouth_height) * s
    mw = 5.5 * p.mouth_width * s
    mx = cx + shift
    if p.smile:
        d.chord(
            box(mx - mw, my - 3.0 * s, mx + mw, my + 4.0 * s),
            0,
            180,
            fill=col(pal.lips),
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
            fill=col(pal.lips),
            width=max(2, int(1.4 * lw * s)),
        )

    if not wood:
        img = img.filter(ImageFilter.GaussianBlur(radius=(0.4 + p.blur) * s))
    img = img.resize((size, size), Image.BOX)
    out = np.asarray(img, dtype=np.uint8)
    if wood:
        return _paper_grain(out, p.grain_seed)
    return _capture(out, p)


def _capture(img: np.ndarray, p: FaceParams) -> np.ndarray:
    """The photo style's lighting ramp, sensor noise and JPEG artefacts."""
    if p.light == 0 and p.noise == 0 and p.jpeg == 0:
        return img
    h, w, _ = img.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (x / (w - 1) - 0.5) * np.cos(p.light_angle) + (y / (h - 1) - 0.5) * np.sin(p.light_angle)
    out = img.astype(np.float32) * (1.0 + 2.0 * p.light * t)[..., None]
    if p.noise:
        out += np.random.default_rng(p.grain_seed).normal(0.0, p.noise, size=out.shape)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if p.jpeg:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=p.jpeg)
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.uint8)
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
    seeds: Sequence[int] | np.ndarray,
    *,
    style: str = "photo",
    size: int = 64,
    patterned: Sequence[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one face per seed; the faces ``patterned`` marks in front of a patterned
    background (``backdrop``, drawn from the face's seed).

    Returns (images uint8 [N, H, W, 3], labels float32 [N, len(ATTRIBUTES)], yaw float32 [N]).
    The same seed gives the same face in both styles.
    """
    params = [sample_params(np.random.default_rng(int(s))) for s in seeds]
    n = size * _SS
    marks = [False] * len(params) if patterned is None else list(patterned)
    if len(marks) != len(params):
        raise ValueError(f"patterned has {len(marks)} marks for {len(params)} seeds")
    patterns = [
        backdrop(np.random.default_rng([int(s), 1]), n) if m else None for s, m in zip(seeds, marks)
    ]
    images = np.stack(
        [render(p, style=style, size=size, pattern=b) for p, b in zip(params, patterns)]
    )
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
