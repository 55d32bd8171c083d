"""What several recipes share: the training data, the R1 penalty, PSNR, encoder re-centring,
widening a trained generator."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import math
import multiprocessing
from collections.abc import Iterator

import numpy as np
import torch

from stylegate.gan import data
from stylegate.gan import networks as N

# The discriminator mirrors the generator's widths: a first run with 32 channels at 64px
# let D win from the first thousands of images and G collapsed to one face.
D_CHANNELS = {4: 128, 8: 128, 16: 64, 32: 32, 64: 16}


def batch_seeds(seed: int, it: int, n: int) -> np.ndarray:
    """The renderer seeds of iteration ``it``'s batch (never a held-out one)."""
    return np.random.default_rng([seed, it]).integers(0, data.HELDOUT_SEED_BASE, size=n)


def render(seeds: np.ndarray, *, style: str = "photo", size: int = 64, device=None):
    """Renders as tensors: (images [N, 3, H, W] in [-1, 1], labels [N, A], yaw [N])."""
    images, labels, yaw = data.render_batch(seeds, style=style, size=size)
    return (
        torch.from_numpy(data.to_tensor_range(images)).to(device),
        torch.from_numpy(labels).to(device),
        torch.from_numpy(yaw).to(device),
    )


def real_batch(
    seed: int,
    it: int,
    n: int,
    *,
    style: str = "photo",
    size: int = 64,
    backdrops: int = 0,
    device=None,
):
    """Iteration ``it``'s batch of real renders: (images, labels, yaw) as in ``render``;
    taken from the batches rendered ahead when a ``prefetching`` block is open."""
    stream = (seed, n, style, size, backdrops)
    if _prefetch is not None:
        arrays = _prefetch.take(stream, it)
    else:
        arrays = _render_arrays(stream, it)
    return tuple(torch.from_numpy(a).to(device) for a in arrays)


def _render_arrays(stream: tuple, it: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch of a stream (seed, n, style, size, backdrops) as numpy arrays (images in
    [-1, 1]); runs in the training process or in a prefetching worker."""
    seed, n, style, size, backdrops = stream
    patterned = [i < backdrops for i in range(n)]
    images, labels, yaw = data.render_batch(
        batch_seeds(seed, it, n), style=style, size=size, patterned=patterned
    )
    # contiguous, as a batch from a worker arrives (pickled): the kernels' results differ in
    # the last bits between memory layouts, and training should not depend on where it rendered
    return np.ascontiguousarray(data.to_tensor_range(images)), labels, yaw


class Prefetcher:
    """Renders the batches of coming iterations in worker processes.

    The renderer is plain Python on one core (about 1 ms a face at 64px): on a GPU, where an
    iteration takes milliseconds, rendering in the loop would bound training. Every stream
    of ``real_batch`` calls (its seed, batch size, style, size and backdrops) asked for a
    second time gets its next ``ahead`` batches queued in the pool at the stride it advanced
    by (every iteration, or every k-th for a term that runs every k-th; a preview's one-off
    batch queues nothing); batches are pure functions of (stream, iteration), so prefetched
    training equals unprefetched."""

    def __init__(self, workers: int, *, ahead: int | None = None):
        # forked, as torch's DataLoader workers: a spawned worker would run the command's
        # main module again; the workers call no torch, only numpy and PIL
        context = multiprocessing.get_context("fork")
        self.pool = cf.ProcessPoolExecutor(workers, mp_context=context)
        self.ahead = ahead or 2 * workers
        self.pending: dict[tuple, cf.Future] = {}
        self.last: dict[tuple, int] = {}  # the iteration each stream was last asked for
        self.hits = 0  # batches that came from the pool already queued

    def take(self, stream: tuple, it: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        future = self.pending.pop((stream, it), None)
        if future is not None:
            self.hits += 1
        stride = it - self.last.get(stream, it)
        if stride > 0:
            for later in range(it + stride, it + stride * (self.ahead + 1), stride):
                if (stream, later) not in self.pending:
                    self.pending[(stream, later)] = self.pool.submit(_render_arrays, stream, later)
        self.last[stream] = it
        for key in [k for k in self.pending if k[0] == stream and k[1] < it]:
            self.pending.pop(key).cancel()  # a stream that jumped (a resumed run): drop
        return future.result() if future is not None else _render_arrays(stream, it)

    def close(self) -> None:
        for future in self.pending.values():
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


_prefetch: Prefetcher | None = None


@contextlib.contextmanager
def prefetching(workers: int) -> Iterator[Prefetcher | None]:
    """Within the block ``real_batch`` takes batches rendered ahead by ``workers`` processes
    (0: none, rendered in the loop as outside the block)."""
    global _prefetch
    if workers <= 0:
        yield None
        return
    _prefetch = Prefetcher(workers)
    try:
        yield _prefetch
    finally:
        _prefetch.close()
        _prefetch = None


def restyle(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The same faces as another hand might draw them: another palette (hue turned a little
    in YIQ, saturation, contrast, brightness), geometry (scale, rotation, shear, shift), ink
    outlines along colour edges, line weight (dark strokes thickened or thinned), crisper
    or posterized fills; each image its own draw. Images in [-1, 1], [N, 3, H, W]. An
    encoder trained to reconstruct these learns to find the nearest face its generator can
    draw, not only the renderer's own."""
    n, dev = images.shape[0], images.device
    F_ = torch.nn.functional

    def u(lo: float, hi: float, shape=(n,)) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(shape, generator=gen)).to(dev)

    def some(p: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen) < p).to(dev)[:, None, None, None]

    def per_image(v: torch.Tensor) -> torch.Tensor:
        return v[:, None, None]

    # palette: YIQ, the chroma plane turned and scaled (saturation), the luma scaled (contrast)
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=dev
    )
    yiq = torch.einsum("ij,njhw->nihw", to_yiq, images)
    angle = u(-0.4, 0.4) * some(0.5)[:, 0, 0, 0]
    sat, con, bri = per_image(u(0.6, 1.4)), per_image(u(0.75, 1.25)), per_image(u(-0.15, 0.15))
    c, s = per_image(torch.cos(angle)), per_image(torch.sin(angle))
    i, q = yiq[:, 1], yiq[:, 2]
    chroma = [(c * i - s * q) * sat, (s * i + c * q) * sat]
    yiq = torch.stack([yiq[:, 0] * con + bri, *chroma], 1)
    x = torch.einsum("ij,njhw->nihw", torch.linalg.inv(to_yiq), yiq)
    # geometry: one affine map per image, edges replicated
    rot, shear, scale = u(-0.2, 0.2), u(-0.15, 0.15), u(0.85, 1.2)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = torch.cos(rot) / scale
    theta[:, 0, 1] = (shear - torch.sin(rot)) / scale
    theta[:, 1, 0] = torch.sin(rot) / scale
    theta[:, 1, 1] = torch.cos(rot) / scale
    theta[:, :, 2] = u(-0.12, 0.12, (n, 2))
    grid = F_.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F_.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = torch.where(some(0.7), moved, x)
    # ink: darken along colour edges (an outlined drawing)
    gray = x.mean(1, keepdim=True)
    edges = (gray - F_.avg_pool2d(gray, 3, stride=1, padding=1, count_include_pad=False)).abs()
    ink = x - per_image(u(4.0, 10.0))[:, None] * edges
    x = torch.where(some(0.3), ink, x)
    # line weight: a 3x3 minimum thickens dark strokes, a maximum thins them
    thick = -F_.max_pool2d(-x, 3, stride=1, padding=1)
    thin = F_.max_pool2d(x, 3, stride=1, padding=1)
    x = torch.where(some(0.2), 0.5 * (x + thick), x)
    x = torch.where(some(0.1), 0.5 * (x + thin), x)
    # crisper edges (unsharp mask), or flat posterized fills
    blurred = F_.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    x = torch.where(some(0.3), x + per_image(u(0.5, 1.5))[:, None] * (x - blurred), x)
    levels = per_image(u(4.0, 8.0))[:, None].round()
    x = torch.where(some(0.15), torch.round((x + 1) / 2 * levels) / levels * 2 - 1, x)
    return x.clamp(-1, 1)


def r1_penalty(D: torch.nn.Module, real: torch.Tensor) -> torch.Tensor:
    """Squared gradient norm of D at the real images (R1), averaged over the batch."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()


def psnr_db(mse: float) -> float:
    """PSNR of a pixel MSE on images in [-1, 1] (peak-to-peak 2)."""
    return 10 * math.log10(4.0 / max(mse, 1e-10))


def recenter_encoder(E: torch.nn.Module, w_avg: torch.Tensor) -> None:
    """Give the encoder a new ``w_avg`` centre without changing what it outputs (the offset
    head's bias absorbs the difference)."""
    with torch.no_grad():
        shift = (E.w_avg - w_avg).repeat(E.num_ws) / E.out.bias_gain
        E.out.bias.add_(shift)
        E.w_avg.copy_(w_avg)


@torch.no_grad()
def widen_generator(G: N.Generator, channels: dict[int, int]) -> N.Generator:
    """A copy of ``G`` with more channels at some resolutions that draws the same images.

    Every trained tensor is copied into the corner of the wider one; the new channels keep
    their fresh random weights, and every convolution's weights *from* a new channel are
    zero, so nothing reaches the image until training moves them (the gradient of those
    zero weights is not zero: the new channels are already active). Demodulation is
    unchanged, as zero weights add nothing to a filter's norm; a conv's weight gain falls
    with its fan-in, so the copied weights are scaled up to match."""
    for res, ch in channels.items():
        if res not in G.config["channels"] or ch < G.config["channels"][res]:
            have = G.config["channels"].get(res)
            raise ValueError(f"widen {res}:{ch}: {res}px has {have} channels; it can only grow")
    config = {**G.config, "channels": {**G.config["channels"], **channels}}
    wide = N.Generator(**config)
    old = G.state_dict()
    for name, t in wide.state_dict().items():
        o = old[name]
        if t.ndim == 4 and o.shape[1] < t.shape[1]:  # a conv's inputs grew: new inputs unheard
            t[:, o.shape[1] :] = 0
            o = o * math.sqrt(t.shape[1] / o.shape[1])
        t[tuple(slice(0, n) for n in o.shape)] = o
    return wide
