"""A second, independent face-drawing program: the held-out "other artist" test set.

Users invert faces our renderer (``gan/data.py``) never drew. To measure how the models
generalize to them, this module draws the same kind of picture (a cartoon head, roughly
centred, with the same seven binary attributes and head yaw) the way another artist would,
written without data.render's drawing code:

- heads are polygons traced from a superellipse with an egg bias and a round, square or
  pointed jaw, some smooth, some low-poly (7-11 facets); outlines from none to thick;
- short hair is a cap (straight, zigzag or side-swept fringe), spiky strands, or a cap with
  a bun; long hair is a curtain of strands or a wavy sheet down past the chin;
- eyes are almonds, dots or rings, closed eyes a lid arc or a lashed line; glasses are
  round, oval or thin rectangular frames with a bridge arc and temples;
- mouths are curved lines (a smile is an upturned arc, or open with teeth); beards follow
  the jaw, or are a chin beard with a moustache;
- flat fills from other palettes; backgrounds with stripes, two tones, dots, rays or a
  vignette; the face sits at other heights and sizes, with or without shoulders;
- drawn at 4x and box-downsampled (the renderer draws at 2x and blurs).

Never train on it: nothing under ``gan/train`` may import this module (a test reads their
sources), so every figure measured on it is a generalization figure (``bench/generalization``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from stylegate.gan.data import ATTRIBUTES, REGRESSIONS, to_tensor_range

__all__ = [
    "ATTRIBUTES",
    "HELDOUT_SEED_BASE",
    "REGRESSIONS",
    "OtherFace",
    "heldout_seeds",
    "render",
    "render_batch",
    "sample",
    "to_tensor_range",
]

RGB = tuple[int, int, int]

# Skin tones, light to dark; the last three are "dark_skin".
SKIN: tuple[RGB, ...] = (
    (255, 228, 206),
    (244, 204, 168),
    (222, 172, 128),
    (160, 104, 70),
    (124, 80, 54),
    (82, 52, 38),
)
DARK_SKIN_FROM = 3
BLOND: tuple[RGB, ...] = ((246, 216, 124), (226, 184, 82), (250, 232, 168))
OTHER_HAIR: tuple[RGB, ...] = (
    (26, 26, 40),  # blue-black
    (62, 40, 28),  # dark brown
    (122, 70, 40),  # chestnut
    (160, 52, 36),  # auburn
    (212, 110, 52),  # ginger
)
BACKGROUNDS: tuple[RGB, ...] = (
    (244, 224, 212),  # peach
    (204, 228, 212),  # mint
    (212, 218, 242),  # periwinkle
    (250, 242, 204),  # cream
    (72, 88, 112),  # slate
    (178, 62, 74),  # crimson
    (44, 74, 64),  # bottle green
    (236, 168, 92),  # orange
    (118, 160, 204),  # sky
    (140, 110, 150),  # mauve
)
SHIRTS: tuple[RGB, ...] = (
    (40, 40, 48),
    (220, 220, 214),
    (196, 60, 60),
    (60, 110, 180),
    (90, 150, 90),
    (230, 190, 60),
    (130, 80, 150),
)
FRAMES: tuple[RGB, ...] = ((16, 16, 16), (110, 60, 28), (30, 50, 130), (190, 30, 50), (40, 110, 90))
IRIS: tuple[RGB, ...] = ((40, 90, 160), (60, 120, 60), (100, 66, 36), (30, 30, 30), (90, 90, 110))

BACKGROUND_PATTERNS = ("flat", "stripes", "two_tone", "dots", "rays", "vignette")
JAWS = ("round", "square", "pointed")
HAIR_STYLES = ("cap", "spikes", "bun")
FRINGES = ("straight", "zigzag", "swept")
LONG_STYLES = ("curtain", "sheet")
EYE_STYLES = ("almond", "dot", "ring")
CLOSED_STYLES = ("lid", "lashes")
GLASSES = ("round", "oval", "rect")
BEARDS = ("full", "chin")
NOSES = ("triangle", "nostrils", "hook", "none")

_SS = 4  # drawing resolution / output resolution
# Seeds of the held-out set (any fixed range; this program is never used for training).
HELDOUT_SEED_BASE = 2_000_000_000


@dataclasses.dataclass(frozen=True)
class OtherFace:
    """One face of the other program; the labels are its first ten fields."""

    smile: bool
    eyeglasses: bool
    eyes_open: bool
    blond: bool
    dark_skin: bool
    long_hair: bool
    beard: bool
    yaw: float  # [-1, 1]: positive moves the features to the image's right
    hair: RGB
    skin: RGB
    # Geometry in 64px units.
    cx: float  # head centre
    cy: float
    half_w: float
    half_h: float
    squareness: float  # superellipse exponent: 2 = ellipse, higher = boxier
    egg: float  # > 0: wider at the temples than at the jaw
    jaw: str  # JAWS
    facets: int  # head polygon vertices (a few: low-poly; many: smooth)
    outline: float  # width of every outline; 0: none
    ink: RGB  # outline colour
    # Parts.
    hair_style: str  # HAIR_STYLES
    fringe: str  # FRINGES
    hairline: float  # fringe height as a fraction of half_h above the centre
    long_style: str  # LONG_STYLES
    long_length: float  # how far below the chin long hair reaches
    eye_style: str  # EYE_STYLES
    closed_style: str  # CLOSED_STYLES
    eye_y: float  # fraction of half_h above the centre
    eye_gap: float  # fraction of half_w between the centre and each eye
    iris: RGB
    brows: bool
    brow_weight: float
    glasses: str  # GLASSES
    frame: RGB
    frame_width: float
    beard_style: str  # BEARDS
    nose: str  # NOSES
    mouth_y: float  # fraction of half_h below the centre
    mouth_w: float
    teeth: bool  # a smile drawn open
    blush: bool
    ears: bool
    shoulders: bool
    shirt: RGB
    background: str  # BACKGROUND_PATTERNS
    bg: RGB
    bg2: RGB
    pattern_angle: float
    pattern_step: float
    jitter_seed: int  # strand lengths and spike tips

    def labels(self) -> np.ndarray:
        """Binary labels in ATTRIBUTES order, float32 [len(ATTRIBUTES)]."""
        values = {
            "smile": self.smile,
            "eyeglasses": self.eyeglasses,
            "eyes_open": self.eyes_open,
            "blond_hair": self.blond,
            "dark_skin": self.dark_skin,
            "long_hair": self.long_hair,
            "beard": self.beard,
        }
        return np.array([float(values[a]) for a in ATTRIBUTES], dtype=np.float32)


def _jitter(rng: np.random.Generator, c: RGB, amount: int = 8) -> RGB:
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(round(x * (1 - t) + y * t) for x, y in zip(a, b))


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def sample(rng: np.random.Generator) -> OtherFace:
    """Draw one face: attributes independently, then this artist's choices."""
    smile = bool(rng.random() < 0.5)
    eyeglasses = bool(rng.random() < 0.35)
    eyes_open = bool(rng.random() < 0.7)
    blond = bool(rng.random() < 0.3)
    skin_i = int(rng.integers(len(SKIN)))
    long_hair = bool(rng.random() < 0.5)
    beard = bool(rng.random() < 0.25)
    yaw = float(rng.uniform(-1.0, 1.0))
    hair = _jitter(rng, _pick(rng, BLOND if blond else OTHER_HAIR))
    skin = _jitter(rng, SKIN[skin_i], 6)
    bg = _jitter(rng, _pick(rng, BACKGROUNDS))
    pattern = _pick(rng, BACKGROUND_PATTERNS)
    toward = (255, 255, 255) if sum(bg) < 380 else (0, 0, 0)
    outline = float(_pick(rng, (0.0, 0.0, 0.6, 1.0, 1.6)))
    return OtherFace(
        smile=smile,
        eyeglasses=eyeglasses,
        eyes_open=eyes_open,
        blond=blond,
        dark_skin=skin_i >= DARK_SKIN_FROM,
        long_hair=long_hair,
        beard=beard,
        yaw=yaw,
        hair=hair,
        skin=skin,
        cx=float(32 + rng.uniform(-4.0, 4.0)),
        cy=float(rng.uniform(28.0, 37.0)),
        half_w=float(rng.uniform(11.5, 15.5)),
        half_h=float(rng.uniform(15.0, 20.0)),
        squareness=float(rng.uniform(2.0, 3.4)),
        egg=float(rng.uniform(-0.06, 0.16)),
        jaw=_pick(rng, JAWS),
        facets=int(rng.integers(7, 12)) if rng.random() < 0.35 else 72,
        outline=outline,
        ink=_pick(rng, ((34, 26, 30), _mix(skin, (0, 0, 0), 0.55))),
        hair_style=_pick(rng, HAIR_STYLES),
        fringe=_pick(rng, FRINGES),
        hairline=float(rng.uniform(0.3, 0.55)),
        long_style=_pick(rng, LONG_STYLES),
        long_length=float(rng.uniform(2.0, 10.0)),
        eye_style=_pick(rng, EYE_STYLES),
        closed_style=_pick(rng, CLOSED_STYLES),
        eye_y=float(rng.uniform(0.0, 0.2)),
        eye_gap=float(rng.uniform(0.36, 0.5)),
        iris=_pick(rng, IRIS),
        brows=bool(rng.random() < 0.8),
        brow_weight=float(rng.uniform(0.7, 1.8)),
        glasses=_pick(rng, GLASSES),
        frame=_pick(rng, FRAMES),
        frame_width=float(rng.uniform(0.7, 1.3)),
        beard_style=_pick(rng, BEARDS),
        nose=_pick(rng, NOSES),
        mouth_y=float(rng.uniform(0.4, 0.56)),
        mouth_w=float(rng.uniform(3.8, 6.0)),
        teeth=bool(rng.random() < 0.4),
        blush=bool(rng.random() < 0.3),
        ears=bool(rng.random() < 0.75),
        shoulders=bool(rng.random() < 0.75),
        shirt=_jitter(rng, _pick(rng, SHIRTS)),
        background=pattern,
        bg=bg,
        bg2=_mix(bg, toward, float(rng.uniform(0.12, 0.3))),
        pattern_angle=float(rng.uniform(0, math.pi)),
        pattern_step=float(rng.uniform(4.0, 9.0)),
        jitter_seed=int(rng.integers(2**31)),
    )


# --------------------------------------------------------------------------- drawing


class _Canvas:
    """A drawing at _SS x the output size, addressed in 64px units."""

    def __init__(self, background: Image.Image):
        self.img = background
        self.n = background.width
        self.k = self.n / 64.0
        self.d = ImageDraw.Draw(self.img)

    def px(self, pts) -> list[tuple[float, float]]:
        return [(x * self.k, y * self.k) for x, y in pts]

    def w(self, width: float) -> int:
        return max(1, round(width * self.k))

    def polygon(self, pts, fill=None, outline=None, width: float = 0.0) -> None:
        pts = self.px(pts)
        if fill is not None:
            self.d.polygon(pts, fill=fill)
        if outline is not None and width > 0:
            self.d.line([*pts, pts[0], pts[1]], fill=outline, width=self.w(width), joint="curve")

    def line(self, pts, fill, width: float) -> None:
        self.d.line(self.px(pts), fill=fill, width=self.w(width), joint="curve")

    def circle(self, x, y, r, fill=None, outline=None, width: float = 0.0) -> None:
        self.ellipse(x, y, r, r, fill=fill, outline=outline, width=width)

    def ellipse(self, x, y, rx, ry, fill=None, outline=None, width: float = 0.0) -> None:
        box = [(x - rx) * self.k, (y - ry) * self.k, (x + rx) * self.k, (y + ry) * self.k]
        self.d.ellipse(box, fill=fill, outline=outline if width > 0 else None, width=self.w(width))


def _arc(cx, cy, rx, ry, a0, a1, n: int = 24) -> list[tuple[float, float]]:
    """Points of an elliptical arc, angles in radians (y down)."""
    t = np.linspace(a0, a1, n)
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


def _head_outline(f: OtherFace, scale: float = 1.0, n: int | None = None) -> np.ndarray:
    """The head contour, [n, 2] in 64px units, clockwise from the right (y down)."""
    n = n or f.facets
    t = np.linspace(0, 2 * np.pi, n, endpoint=False) + (np.pi / n if n < 20 else 0.0)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / f.squareness
    x = np.sign(c) * np.abs(c) ** e
    y = np.sign(s) * np.abs(s) ** e  # +1 at the chin
    x = x * (1 - f.egg * y)
    lower = np.clip(y, 0, None)
    if f.jaw == "pointed":
        x = x * (1 - 0.38 * lower**1.6)
    elif f.jaw == "square":
        x = x * (1 + 0.1 * np.sin(np.pi * lower))
    narrow = 1 - 0.14 * abs(f.yaw)
    px = f.cx + scale * f.half_w * narrow * x + f.yaw * 1.6 * lower
    py = f.cy + scale * f.half_h * y
    return np.stack([px, py], axis=1)


def _paint_background(f: OtherFace, size: int) -> Image.Image:
    n = size * _SS
    k = n / 64.0
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / k  # 64px units
    bg = np.array(f.bg, np.float32)
    bg2 = np.array(f.bg2, np.float32)
    if f.background == "stripes":
        u = xx * math.cos(f.pattern_angle) + yy * math.sin(f.pattern_angle)
        m = ((u / f.pattern_step) % 1.0 < 0.5).astype(np.float32)
    elif f.background == "two_tone":
        u = (xx - 32) * math.cos(f.pattern_angle) + (yy - 32) * math.sin(f.pattern_angle)
        m = (u > 0).astype(np.float32)
    elif f.background == "dots":
        gx = (xx % f.pattern_step) - f.pattern_step / 2
        gy = (yy % f.pattern_step) - f.pattern_step / 2
        m = (gx**2 + gy**2 < (0.22 * f.pattern_step) ** 2).astype(np.float32)
    elif f.background == "rays":
        ang = np.arctan2(yy - f.cy, xx - f.cx) + f.pattern_angle
        m = ((ang / (2 * np.pi) * 10) % 1.0 < 0.5).astype(np.float32)
    elif f.background == "vignette":
        r = np.sqrt((xx - 32) ** 2 + (yy - 30) ** 2) / 45.0
        m = np.clip(r, 0, 1) ** 1.5
    else:
        m = np.zeros_like(xx)
    rgb = bg * (1 - m[..., None]) + bg2 * m[..., None]
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def _draw_long_hair(cv: _Canvas, f: OtherFace, rng: np.random.Generator) -> None:
    top = f.cy - f.half_h * 1.12
    bottom = f.cy + f.half_h + f.long_length
    reach = f.half_w * 1.3
    if f.long_style == "curtain":
        strands = 15
        for i in range(strands):
            u = -1 + 2 * i / (strands - 1)
            x = f.cx + u * reach + f.yaw * 1.0
            y1 = bottom - abs(u) * 2.5 + rng.uniform(-1.5, 1.5)
            cv.line([(f.cx + u * f.half_w * 0.5, top + 2), (x, f.cy), (x, y1)], f.hair, 3.6)
        cv.ellipse(f.cx, top + f.half_h * 0.55, f.half_w * 1.18, f.half_h * 0.65, fill=f.hair)
    else:  # a wavy sheet
        t = np.linspace(0, 1, 16)
        wave = 1.2 * np.sin(t * 3 * np.pi)
        left = [
            (f.cx - reach - wave[i] - 0.8 * t[i], top + 6 + t[i] * (bottom - top - 6))
            for i in range(16)
        ]
        right = [
            (f.cx + reach + wave[i] + 0.8 * t[i], bottom - t[i] * (bottom - top - 6))
            for i in range(16)
        ]
        crown = _arc(f.cx, top + 6, reach, 7.5, np.pi, 2 * np.pi)
        cv.polygon([*left, *right, *crown[1:-1]], fill=f.hair, outline=f.ink, width=f.outline)


def _draw_body(cv: _Canvas, f: OtherFace) -> None:
    neck_w = f.half_w * 0.42
    neck_top = f.cy + f.half_h * 0.6
    neck_bottom = f.cy + f.half_h + 6
    neck = _mix(f.skin, (0, 0, 0), 0.12)
    cv.polygon(
        [
            (f.cx - neck_w, neck_top),
            (f.cx + neck_w, neck_top),
            (f.cx + neck_w * 1.15, neck_bottom),
            (f.cx - neck_w * 1.15, neck_bottom),
        ],
        fill=neck,
    )
    if not f.shoulders:
        return
    y0 = f.cy + f.half_h + 3.5
    span = f.half_w * 1.9
    pts = [(f.cx - neck_w * 1.4, y0), (f.cx + neck_w * 1.4, y0)]
    pts += _arc(f.cx + span - 7, y0 + 7, 7, 7, -np.pi / 2, 0, 8)
    pts += [(f.cx + span + 2, 70), (f.cx - span - 2, 70)]
    pts += _arc(f.cx - span + 7, y0 + 7, 7, 7, np.pi, 1.5 * np.pi, 8)
    cv.polygon(pts, fill=f.shirt, outline=f.ink, width=f.outline)
    # a V collar showing the neck
    cv.polygon([(f.cx - neck_w * 1.3, y0), (f.cx + neck_w * 1.3, y0), (f.cx, y0 + 5)], fill=neck)


def _draw_ears(cv: _Canvas, f: OtherFace) -> None:
    if not f.ears:
        return
    ey = f.cy + f.half_h * 0.05
    for side in (-1, 1):
        if abs(f.yaw) > 0.55 and np.sign(f.yaw) == side:
            continue  # the ear on the side the face turns to is hidden
        x = f.cx + side * f.half_w * (1 - 0.14 * abs(f.yaw)) * 0.97 - f.yaw * 0.8
        cv.ellipse(x, ey, 2.4, 3.6, fill=f.skin, outline=f.ink, width=f.outline)
        a0 = -np.pi / 2 if side > 0 else np.pi / 2  # the inner fold faces away from the head
        cv.line(
            _arc(x + side * 0.4, ey, 1.1, 2.0, a0, a0 + np.pi, 8),
            _mix(f.skin, (0, 0, 0), 0.3),
            0.6,
        )


def _draw_hair_top(cv: _Canvas, f: OtherFace, rng: np.random.Generator) -> None:
    shell = _head_outline(f, scale=1.08, n=72)
    shell[:, 1] -= 1.4
    line_y = f.cy - f.half_h * f.hairline
    side_y = f.cy - f.half_h * (f.hairline - 0.35) if f.long_hair else line_y + 3.0
    above = shell[shell[:, 1] < side_y]
    # order the crown points left -> right over the top (angle from straight up)
    above = above[np.argsort(np.arctan2(above[:, 0] - f.cx, f.cy - above[:, 1]))]
    if len(above) < 3:
        return
    left, right = above[0], above[-1]
    fringe: list[tuple[float, float]] = []
    xs = np.linspace(right[0], left[0], 11)
    shift = f.yaw * 2.0
    if f.fringe == "zigzag":
        for i, x in enumerate(xs):
            fringe.append((x + shift * 0.3, line_y + (2.2 if i % 2 else -0.6)))
    elif f.fringe == "swept":
        for i, x in enumerate(xs):
            fringe.append((x, line_y - 2.5 + 5.5 * (i / 10) ** 1.4))
    else:
        for x in xs:
            fringe.append((x, line_y + 0.8))
    # the crown left -> right, then back along the fringe
    pts = [tuple(p) for p in above] + [(right[0], side_y), *fringe, (left[0], side_y)]
    if f.hair_style == "bun":
        cv.circle(
            f.cx + f.yaw * 1.5,
            f.cy - f.half_h - 3.0,
            5.0,
            fill=f.hair,
            outline=f.ink,
            width=f.outline,
        )
    cv.polygon(pts, fill=f.hair, outline=f.ink, width=f.outline)
    if f.hair_style == "spikes":
        top = f.cy - f.half_h * 1.08 - 1.4
        for i in range(7):
            u = -0.8 + 1.6 * i / 6
            bx = f.cx + u * f.half_w
            by = top + (abs(u) ** 2) * f.half_h * 0.45 + 2.5
            tip = (bx + u * 2.5 + rng.uniform(-1, 1), by - rng.uniform(3.0, 5.0))
            cv.polygon([(bx - 2.4, by + 1), tip, (bx + 2.4, by + 1)], fill=f.hair)
    # a few darker strand lines on the cap
    strand = _mix(f.hair, (0, 0, 0), 0.25)
    for u in (-0.4, 0.1, 0.5):
        x = f.cx + u * f.half_w
        cv.line([(x, line_y - 1), (x - u * 3 + 1, f.cy - f.half_h * 0.95)], strand, 0.5)


def _draw_beard(cv: _Canvas, f: OtherFace, mx: float, my: float) -> None:
    color = _mix(f.hair, (0, 0, 0), 0.12)
    if f.beard_style == "full":
        jaw = _head_outline(f, scale=1.04, n=72)
        cut = f.cy + f.half_h * 0.15
        lower = jaw[jaw[:, 1] > cut]
        lower = lower[np.argsort(np.arctan2(lower[:, 1] - f.cy, lower[:, 0] - f.cx))]
        lower[:, 1] += np.clip(lower[:, 1] - (f.cy + f.half_h * 0.6), 0, None) * 0.45
        inner = _arc(mx, my - 0.5, f.mouth_w + 2.0, 3.4, np.pi, 0, 12)
        cv.polygon(
            [tuple(p) for p in lower] + inner, fill=color, outline=f.ink, width=f.outline * 0.7
        )
    else:  # chin beard and moustache
        chin = f.cy + f.half_h * 1.05
        pts = [(mx - f.mouth_w * 0.8, my + 1.6), (mx + f.mouth_w * 0.8, my + 1.6)]
        pts += _arc(
            mx + f.yaw * 0.8, my + 1.6, f.mouth_w * 0.8, chin + 2.0 - my - 1.6, 0, np.pi, 12
        )
        cv.polygon(pts, fill=color, outline=f.ink, width=f.outline * 0.7)
    moustache = [*_arc(mx, my - 1.0, f.mouth_w * 1.05, 2.4, np.pi, 2 * np.pi, 12)]
    moustache += [
        (mx + f.mouth_w * 1.05, my - 0.2),
        (mx, my - 1.2),
        (mx - f.mouth_w * 1.05, my - 0.2),
    ]
    cv.polygon(moustache, fill=color)


def _draw_eyes(cv: _Canvas, f: OtherFace, shift: float) -> list[tuple[float, float]]:
    ey = f.cy - f.half_h * f.eye_y
    gap = f.half_w * f.eye_gap * (1 - 0.14 * abs(f.yaw))
    centres = [(f.cx + shift + side * gap, ey) for side in (-1, 1)]
    dark = (26, 20, 24)
    for side, (ex, y) in zip((-1, 1), centres):
        if f.eyes_open:
            look = f.yaw * 0.9
            if f.eye_style == "almond":
                top = _arc(ex, y + 1.2, 3.4, 3.0, np.pi, 2 * np.pi, 12)
                bottom = _arc(ex, y - 1.0, 3.4, 2.2, 0, np.pi, 12)
                cv.polygon(top + bottom, fill=(248, 246, 240), outline=dark, width=0.6)
                cv.circle(ex + look, y, 1.45, fill=f.iris)
                cv.circle(ex + look, y, 0.7, fill=dark)
            elif f.eye_style == "dot":
                cv.ellipse(ex + look * 0.5, y, 1.5, 1.9, fill=dark)
                cv.circle(ex + look * 0.5 - 0.5, y - 0.7, 0.45, fill=(255, 255, 255))
            else:  # ring
                cv.circle(ex, y, 2.5, fill=(255, 255, 255), outline=dark, width=0.55)
                cv.circle(ex + look, y + 0.2, 1.15, fill=dark)
        elif f.closed_style == "lid":
            cv.line(_arc(ex, y + 1.0, 3.0, 2.2, 1.1 * np.pi, 1.9 * np.pi, 10), dark, 0.8)
        else:  # a flat lid with lashes
            cv.line([(ex - 3.0, y), (ex + 3.0, y)], dark, 0.8)
            for u in (-1.8, 0.0, 1.8):
                cv.line([(ex + u, y), (ex + u * 1.2, y + 1.5)], dark, 0.5)
        if f.brows:
            by = y - 4.2 - f.brow_weight * 0.3
            brow = _mix(f.hair, (0, 0, 0), 0.35)
            cv.line(
                [(ex - 2.8, by + 0.6), (ex, by - 0.4), (ex + 2.8, by + 0.4 * side)],
                brow,
                f.brow_weight,
            )
    return centres


def _draw_glasses(cv: _Canvas, f: OtherFace, centres: list[tuple[float, float]]) -> None:
    w = f.frame_width
    (lx, y), (rx, _) = centres
    r = 4.3 if f.glasses == "round" else 4.6
    for ex in (lx, rx):
        if f.glasses == "round":
            cv.circle(ex, y, r, outline=f.frame, width=w)
        elif f.glasses == "oval":
            cv.ellipse(ex, y, r, 3.3, outline=f.frame, width=w)
        else:
            cv.polygon(
                [(ex - r, y - 3.0), (ex + r, y - 3.0), (ex + r, y + 2.8), (ex - r, y + 2.8)],
                outline=f.frame,
                width=w,
            )
    mid = (lx + rx) / 2
    cv.line(_arc(mid, y, (rx - lx) / 2 - r + 0.3, 1.4, np.pi, 2 * np.pi, 8), f.frame, w)
    edge = f.half_w * (1 - 0.14 * abs(f.yaw))
    for side, ex in ((-1, lx), (1, rx)):
        if abs(f.yaw) > 0.55 and np.sign(f.yaw) == side:
            continue
        cv.line([(ex + side * r, y - 0.5), (f.cx + side * edge * 0.98, y - 1.0)], f.frame, w * 0.8)


def _draw_nose(cv: _Canvas, f: OtherFace, shift: float) -> None:
    nx = f.cx + shift * 1.25
    ny = f.cy + f.half_h * 0.2
    shade = _mix(f.skin, (0, 0, 0), 0.28)
    turn = 1.0 if f.yaw >= 0 else -1.0
    if f.nose == "triangle":
        cv.polygon(
            [(nx, ny - 3.0), (nx + 1.8 * turn, ny + 1.2), (nx - 1.0 * turn, ny + 1.2)], fill=shade
        )
    elif f.nose == "nostrils":
        cv.circle(nx - 1.1, ny + 0.8, 0.55, fill=shade)
        cv.circle(nx + 1.1, ny + 0.8, 0.55, fill=shade)
    elif f.nose == "hook":
        cv.line(
            [(nx - 0.4 * turn, ny - 3.0), (nx + 1.4 * turn, ny + 1.0), (nx - 0.6 * turn, ny + 1.4)],
            shade,
            0.7,
        )


def _draw_mouth(cv: _Canvas, f: OtherFace, mx: float, my: float) -> None:
    lip = (120, 36, 44) if not f.dark_skin else (60, 20, 24)
    mw = f.mouth_w
    if f.smile and f.teeth:
        pts = [(mx - mw, my - 0.8), (mx + mw, my - 0.8)]
        pts += _arc(mx, my - 0.8, mw, 3.6, 0, np.pi, 14)
        cv.polygon(pts, fill=(110, 24, 36), outline=lip, width=0.6)
        cv.polygon(
            [
                (mx - mw * 0.8, my - 0.5),
                (mx + mw * 0.8, my - 0.5),
                (mx + mw * 0.6, my + 0.7),
                (mx - mw * 0.6, my + 0.7),
            ],
            fill=(250, 250, 246),
        )
    elif f.smile:
        cv.line(_arc(mx, my - 2.2, mw, 3.2, 0.12 * np.pi, 0.88 * np.pi, 14), lip, 1.0)
        for side in (-1, 1):  # dimples at the corners
            x = mx + side * mw * 0.98
            cv.line([(x - side * 0.4, my - 1.5), (x + side * 0.6, my - 2.4)], lip, 0.6)
    else:
        cv.line([(mx - mw * 0.75, my + 0.3), (mx, my), (mx + mw * 0.75, my + 0.3)], lip, 0.9)


def render(f: OtherFace, *, size: int = 64) -> np.ndarray:
    """Draw one face of the other program. Returns uint8 [size, size, 3]."""
    rng = np.random.default_rng(f.jitter_seed)
    cv = _Canvas(_paint_background(f, size))
    shift = f.yaw * f.half_w * 0.36

    if f.long_hair:
        _draw_long_hair(cv, f, rng)
    _draw_body(cv, f)
    _draw_ears(cv, f)
    head = [tuple(p) for p in _head_outline(f)]
    cv.polygon(head, fill=f.skin, outline=f.ink, width=f.outline)
    if f.blush:
        pink = _mix(f.skin, (230, 90, 110), 0.35)
        for side in (-1, 1):
            cv.ellipse(
                f.cx + shift + side * f.half_w * 0.55, f.cy + f.half_h * 0.28, 2.4, 1.5, fill=pink
            )
    mx = f.cx + shift * 1.1
    my = f.cy + f.half_h * f.mouth_y
    if f.beard:
        _draw_beard(cv, f, mx, my)
    _draw_hair_top(cv, f, rng)
    centres = _draw_eyes(cv, f, shift)
    if f.eyeglasses:
        _draw_glasses(cv, f, centres)
    _draw_nose(cv, f, shift)
    _draw_mouth(cv, f, mx, my)
    return np.asarray(cv.img.resize((size, size), Image.BOX), dtype=np.uint8)


def render_batch(
    seeds: Sequence[int] | np.ndarray, *, size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One face per seed, like ``data.render_batch``.

    Returns (images uint8 [N, H, W, 3], labels float32 [N, len(ATTRIBUTES)], yaw float32 [N]).
    """
    faces = [sample(np.random.default_rng(int(s))) for s in seeds]
    images = np.stack([render(f, size=size) for f in faces])
    labels = np.stack([f.labels() for f in faces])
    yaw = np.array([f.yaw for f in faces], dtype=np.float32)
    return images, labels, yaw


def heldout_seeds(n: int) -> np.ndarray:
    """Seeds of the other set's faces (a fixed range; none of it is ever trained on)."""
    return np.arange(HELDOUT_SEED_BASE, HELDOUT_SEED_BASE + n)
