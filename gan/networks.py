"""StyleGAN2-style networks in plain PyTorch ops, every one exportable to ONNX.

Written for export first (see docs/design.md, "Verified facts"):
- modulated convolutions use the NON-fused form (scale input by style, shared-weight conv,
  scale output by demodulation coefficients), so the batch stays dynamic and the backward
  pass needs only input gradients;
- resampling is nearest-neighbour via reshape plus a fixed depthwise blur or a strided
  depthwise box filter, whose gradients are (transposed) convolutions;
- noise is a constant buffer per layer (``noise_mode="const"``), random only in training.
"""

from __future__ import annotations

import itertools
import math
import typing

import torch
import torch.nn.functional as F
from torch import nn

NoiseMode = str  # "random" | "const" | "none"


# --------------------------------------------------------------------------- building blocks


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with the StyleGAN gain of sqrt(2)."""
    return F.leaky_relu(x, 0.2) * math.sqrt(2.0)


class _Nearest2x(torch.autograd.Function):
    """Nearest 2x upsampling whose gradient is a 2x2 sum pool (4 x average pool), not the
    scatter-add autograd derives from the traced index gather: onnxruntime runs that
    ScatterND(reduction=add) on several threads without ordering the repeated indices, and
    lost updates made one gradient in ~20 of the exported step wrong by up to 1%
    (docs/design.md)."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(grad, 2) * 4.0


def upsample_nearest2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2x upsampling. [N,C,H,W] -> [N,C,2H,2W]. Traced, an index gather: as an expand
    + reshape of the same values it was a 6-D Expand, the slowest op of the inversion step on
    onnxruntime (docs/design.md). Its gradient is a sum pool (``_Nearest2x``)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _Nearest2x.apply(x)
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2x upsampling then a fixed [1,2,1] blur (used on the 3-channel skip images only:
    a depthwise blur on wide feature maps costs more than the convolutions on CPU)."""
    c = x.shape[1]
    x = upsample_nearest2x(x)
    k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    k = (k[:, None] * k[None, :]) / 16.0
    return F.conv2d(x, k.expand(c, 1, 3, 3), padding=1, groups=c)


# NVlabs / rosinality resampling (``resample="fir"``, for converted checkpoints): zero
# insertion and a [1,3,3,1] FIR instead of nearest-neighbour copies.
_FIR_TAPS = (1.0, 3.0, 3.0, 1.0)


def fir_filter2d(x: torch.Tensor, pad: tuple[int, int], gain: float) -> torch.Tensor:
    """Zero-pad (before, after) each spatial side, then the separable [1,3,3,1] 4x4 FIR
    scaled to sum to ``gain``, depthwise. [N, C, H, W] -> [N, C, H + sum(pad) - 3, ...]."""
    c = x.shape[1]
    k = torch.tensor(_FIR_TAPS, dtype=x.dtype, device=x.device)
    k = k[:, None] * k[None, :]
    k = k * (gain / k.sum())
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, k.expand(c, 1, 4, 4), groups=c)


def upsample_fir2x(x: torch.Tensor) -> torch.Tensor:
    """NVlabs ``upfirdn2d.upsample2d``: zero insertion, then the FIR with gain 4.
    [N,C,H,W] -> [N,C,2H,2W]."""
    n, c, h, w = x.shape
    x = F.pad(x[:, :, :, None, :, None], (0, 1, 0, 0, 0, 1)).reshape(n, c, 2 * h, 2 * w)
    return fir_filter2d(x, (2, 1), 4.0)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x2 box filter with stride 2. [N, C, H, W] -> [N, C, H/2, W/2]."""
    c = x.shape[1]
    k = torch.full((c, 1, 2, 2), 0.25, dtype=x.dtype, device=x.device)
    return F.conv2d(x, k, stride=2, groups=c)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """Divide each row by its root mean square (the 2nd-moment normalization of z)."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class FullyConnected(nn.Module):
    """Linear layer with equalized learning rate."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        bias_init: float = 0.0,  # initial bias value (1 for style affines: identity modulation)
        lr_mul: float = 1.0,  # learning-rate multiplier (0.01 in the mapping network)
        activation: bool = False,  # apply lrelu
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.bias_gain if self.bias is not None else None
        x = F.linear(x, self.weight * self.weight_gain, b)
        return lrelu(x) if self.activation else x


class Conv2d(nn.Module):
    """Convolution with equalized learning rate and optional 2x resampling."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        activation: bool = True,
        down: bool = False,  # 2x box downsample before the conv (the conv then runs at half size)
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.activation = activation
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = downsample2x(x)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        return lrelu(x) if self.activation else x


# --------------------------------------------------------------------------- generator


class MappingNetwork(nn.Module):
    """z [N, z_dim] (and a class label c [N, c_dim] when conditional) -> w [N, w_dim],
    tracking the moving average of w for truncation."""

    def __init__(
        self,
        z_dim: int,  # input latent size
        w_dim: int,  # intermediate latent size
        *,
        num_layers: int = 4,  # fully-connected layers
        lr_mul: float = 0.01,  # learning-rate multiplier of every layer
        w_avg_beta: float = 0.995,  # decay of the tracked w average
        c_dim: int = 0,  # class-label size; > 0: NVlabs' conditional mapping (an ``embed`` of c)
    ):
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.c_dim = c_dim
        self.w_avg_beta = w_avg_beta
        # NVlabs: c is embedded to w_dim features, normalized like z, and concatenated with it.
        self.embed = FullyConnected(c_dim, w_dim) if c_dim > 0 else None
        dims = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            FullyConnected(a, b, lr_mul=lr_mul, activation=True)
            for a, b in itertools.pairwise(dims)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self, z: torch.Tensor, c: torch.Tensor | None = None, *, update_w_avg: bool = False
    ) -> torch.Tensor:
        """``c``: one-hot labels [N, c_dim] of a conditional mapping. None there takes class
        ``i % c_dim`` for row i (every class equally: what w statistics such as w_avg and
        the latent directions sample); ignored by an unconditional mapping."""
        x = _normalize(z)  # [N, z_dim]
        if self.embed is not None:
            if c is None:
                c = F.one_hot(torch.arange(z.shape[0], device=z.device) % self.c_dim, self.c_dim)
            x = torch.cat([x, _normalize(self.embed(c.to(z.dtype)))], dim=1)
        for layer in self.layers:
            x = layer(x)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return x  # [N, w_dim]

    def truncate(
        self, w: torch.Tensor, psi: float = 1.0, cutoff: int | None = None
    ) -> torch.Tensor:
        """Pull w or ws towards w_avg. ``cutoff``: only the first `cutoff` ws of a
        [N, num_ws, w_dim]."""
        if psi == 1.0:
            return w
        if w.ndim == 2 or cutoff is None:
            return self.w_avg.lerp(w, psi)
        out = w.clone()
        out[:, :cutoff] = self.w_avg.lerp(w[:, :cutoff], psi)
        return out


class ModulatedConv(nn.Module):
    """Style-modulated 3x3 (or 1x1) convolution, non-fused form."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        *,
        kernel_size: int = 3,
        demodulate: bool = True,
        up: bool = False,  # 2x upsample before the conv
        resample: str = "nearest",  # "fir": NVlabs' stride-2 transposed conv + FIR (imports)
    ):
        super().__init__()
        self.resample = resample
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        self.up = up

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, fused: bool = False) -> torch.Tensor:
        """``fused``: per-sample weights in one grouped conv. Same math, faster for training on
        CPU, but it freezes the batch size into an exported graph, so export uses the default."""
        styles = self.affine(w)  # [N, in]
        weight = self.weight * self.weight_gain  # [out, in, k, k]
        if self.up and self.resample == "fir":
            x = x * styles[:, :, None, None]
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)  # [N, out, 2H+1, 2W+1]
            x = fir_filter2d(x, (1, 1), 4.0)  # [N, out, 2H, 2W]
            if self.demodulate:
                dcoef = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8)
                x = x * dcoef[:, :, None, None]
            return x
        if self.up:
            x = upsample_nearest2x(x)  # the 3x3 conv that follows smooths
        if fused:
            n, _, h, wd = x.shape
            ww = weight[None] * styles[:, None, :, None, None]  # [N, out, in, k, k]
            if self.demodulate:
                ww = ww * torch.rsqrt(ww.square().sum(dim=(2, 3, 4)) + 1e-8)[:, :, None, None, None]
            x = F.conv2d(
                x.reshape(1, -1, h, wd),
                ww.reshape(-1, *weight.shape[1:]),
                padding=self.padding,
                groups=n,
            )
            return x.reshape(n, -1, h, wd)
        x = x * styles[:, :, None, None]
        x = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            wsq = weight.square().sum(dim=(2, 3))  # [out, in]
            dcoef = torch.rsqrt(styles.square() @ wsq.t() + 1e-8)  # [N, out]
            x = x * dcoef[:, :, None, None]
        return x


class SynthesisLayer(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        up: bool = False,
        resample: str = "nearest",
        conv_clamp: float | None = None,  # clamp the activations to +-this (NVlabs), None: no clamp
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.conv = ModulatedConv(in_channels, out_channels, w_dim, up=up, resample=resample)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.resolution = resolution

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode = "const", fused: bool = False
    ):
        x = self.conv(x, w, fused=fused)
        b = self.bias[None, :, None, None]
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device)
            b = b + noise * self.noise_strength
        elif noise_mode == "const":
            b = b + self.noise_const * self.noise_strength
        x = lrelu(x + b)
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class ToRGB(nn.Module):
    def __init__(
        self, in_channels: int, w_dim: int, img_channels: int = 3, conv_clamp: float | None = None
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.conv = ModulatedConv(in_channels, img_channels, w_dim, kernel_size=1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = False) -> torch.Tensor:
        x = self.conv(x, w, fused=fused) + self.bias[None, :, None, None]
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const input or up-conv) + conv + toRGB, skip architecture."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        resample: str = "nearest",
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.resolution = resolution
        self.resample = resample
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim,
                resolution,
                up=True,
                resample=resample,
                conv_clamp=conv_clamp,
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp
        )
        self.torgb = ToRGB(out_channels, w_dim, img_channels, conv_clamp=conv_clamp)
        self.num_conv = 1 if self.conv0 is None else 2
        self.num_torgb = 1

    def forward(self, x, img, ws: torch.Tensor, noise_mode: NoiseMode, fused: bool = False):
        # ws: [N, num_conv + num_torgb, w_dim]
        i = 0
        if self.conv0 is None:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, ws[:, i], noise_mode, fused)
            i += 1
        x = self.conv1(x, ws[:, i], noise_mode, fused)
        i += 1
        y = self.torgb(x, ws[:, i], fused)
        img = y if img is None else self.upsample_image(img) + y
        return x, img

    def upsample_image(self, img: torch.Tensor) -> torch.Tensor:
        return upsample_fir2x(img) if self.resample == "fir" else upsample2x(img)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, 3, R, R] in about [-1, 1]."""

    def __init__(
        self,
        w_dim: int,  # latent size
        resolution: int,  # output resolution, a power of two >= 4
        channels: dict[int, int],  # channels per resolution
        *,
        img_channels: int = 3,
        resample: str = "nearest",  # "nearest" (ours) | "fir" (NVlabs/rosinality imports)
        conv_clamp: float | None = None,  # NVlabs' activation clamp (converted models), None: none
    ):
        super().__init__()
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
        self.blocks = nn.ModuleList()
        self.num_ws = 0
        # Which w index drives which resolution (exported in the model metadata).
        self.layer_resolutions: list[int] = []
        for res in self.block_resolutions:
            in_ch = 0 if res == 4 else channels[res // 2]
            block = SynthesisBlock(
                in_ch, channels[res], w_dim, res, img_channels, resample, conv_clamp
            )
            self.blocks.append(block)
            self.num_ws += block.num_conv
            self.layer_resolutions += [res] * block.num_conv
        self.num_ws += 1  # the last toRGB
        self.layer_resolutions.append(resolution)

    def forward(
        self, ws: torch.Tensor, noise_mode: NoiseMode = "const", *, fused: bool = False
    ) -> torch.Tensor:
        x = img = None
        idx = 0
        for block in self.blocks:
            n = block.num_conv + block.num_torgb
            x, img = block(x, img, ws[:, idx : idx + n], noise_mode, fused)
            idx += block.num_conv
        return img  # [N, C, R, R]


class Generator(nn.Module):
    """Mapping + synthesis, exposed separately (callers rely on ``num_ws`` and ``w_dim``)."""

    def __init__(
        self,
        *,
        z_dim: int = 128,
        w_dim: int = 128,
        resolution: int = 64,
        channels: dict[int, int] | None = None,  # None: the shipped 64px configuration
        mapping_layers: int = 4,
        img_channels: int = 3,
        resample: str = "nearest",  # "fir": NVlabs/rosinality up-convs and skip upsampling
        conv_clamp: float | None = None,  # NVlabs' activation clamp (converted models), None: none
        c_dim: int = 0,  # class-label size of a conditional (NVlabs) mapping, 0: unconditional
    ):
        super().__init__()
        if resample not in ("nearest", "fir"):
            raise ValueError(f"resample must be 'nearest' or 'fir', got {resample!r}")
        channels = channels or default_channels(resolution)
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.c_dim = c_dim
        self.synthesis = SynthesisNetwork(
            w_dim,
            resolution,
            channels,
            img_channels=img_channels,
            resample=resample,
            conv_clamp=conv_clamp,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, num_layers=mapping_layers, c_dim=c_dim)
        self.config = {
            "z_dim": z_dim,
            "w_dim": w_dim,
            "resolution": resolution,
            "channels": {int(k): int(v) for k, v in channels.items()},
            "mapping_layers": mapping_layers,
            "img_channels": img_channels,
        }
        if resample != "nearest":  # shipped configs stay as they were
            self.config["resample"] = resample
        if conv_clamp is not None:
            self.config["conv_clamp"] = conv_clamp
        if c_dim:
            self.config["c_dim"] = c_dim

    def ws(
        self,
        z: torch.Tensor,
        *,
        psi: float = 1.0,
        cutoff: int | None = None,
        c: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z [N, z_dim] (c [N, c_dim] when conditional) -> ws [N, num_ws, w_dim] (truncated)."""
        w = self.mapping(z, c)[:, None].expand(-1, self.num_ws, -1)
        return self.mapping.truncate(w, psi, cutoff)

    def forward(
        self, z: torch.Tensor, *, psi: float = 1.0, noise_mode: NoiseMode = "const"
    ) -> torch.Tensor:
        return self.synthesis(self.ws(z, psi=psi), noise_mode)


def default_channels(resolution: int) -> dict[int, int]:
    """The shipped 64px widths (docs/design.md, "Training on 2 CPU cores"), halved per octave
    above 64."""
    base = {4: 128, 8: 128, 16: 64, 32: 32, 64: 16}
    out = {}
    for i in range(2, int(math.log2(resolution)) + 1):
        r = 2**i
        out[r] = base.get(r, 16)
    return out


# ------------------------------------------------------------------------ discriminator and encoder


class ResidualDown(nn.Module):
    """conv -> conv(down), plus a 1x1 downsampled skip, scaled by 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = Conv2d(in_channels, in_channels, 3)
        self.conv1 = Conv2d(in_channels, out_channels, 3, down=True)
        self.skip = Conv2d(in_channels, out_channels, 1, bias=False, activation=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * (1 / math.sqrt(2))


class Trunk(nn.Module):
    """fromRGB + residual downsampling blocks down to 4x4. [N,3,R,R] -> [N, C4, 4, 4]."""

    def __init__(self, resolution: int, channels: dict[int, int], img_channels: int = 3):
        super().__init__()
        self.fromrgb = Conv2d(img_channels, channels[resolution], 1)
        blocks = []
        r = resolution
        while r > 4:
            blocks.append(ResidualDown(channels[r], channels[r // 2]))
            r //= 2
        self.blocks = nn.ModuleList(blocks)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.fromrgb(img)
        for b in self.blocks:
            x = b(x)
        return x


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        g = 1
    y = x.reshape(g, -1, c, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()  # [n/g, c, h, w]
    y = y.mean(dim=(1, 2, 3))[:, None, None, None]  # [n/g, 1, 1, 1]
    y = y.repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Residual discriminator with minibatch-stddev. image [N,3,R,R] -> logit [N, 1]."""

    def __init__(
        self, *, resolution: int = 64, channels: dict[int, int] | None = None, img_channels: int = 3
    ):
        super().__init__()
        channels = channels or {4: 128, 8: 128, 16: 64, 32: 32, 64: 32}
        self.config = {
            "resolution": resolution,
            "channels": {int(k): int(v) for k, v in channels.items()},
            "img_channels": img_channels,
        }
        self.trunk = Trunk(resolution, channels, img_channels)
        c4 = channels[4]
        self.conv = Conv2d(c4 + 1, c4, 3)
        self.fc = FullyConnected(c4 * 16, c4, activation=True)
        self.out = FullyConnected(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.trunk(img)
        x = self.conv(minibatch_stddev(x))
        return self.out(self.fc(x.flatten(1)))


class Encoder(nn.Module):
    """Domain-guided encoder of In-Domain GAN Inversion: image [N,3,R,R] -> ws [N, num_ws, w_dim].

    Predicts an offset from ``w_avg`` (a buffer set from the generator), which starts
    training in the generator's domain.
    """

    def __init__(
        self,
        *,
        num_ws: int,
        w_dim: int,
        resolution: int = 64,
        channels: dict[int, int] | None = None,
        img_channels: int = 3,
    ):
        super().__init__()
        # Narrow at high resolution: the encoder runs inside every inversion step (domain term).
        channels = channels or {4: 256, 8: 128, 16: 64, 32: 32, 64: 16}
        self.num_ws = num_ws
        self.w_dim = w_dim
        self.config = {
            "num_ws": num_ws,
            "w_dim": w_dim,
            "resolution": resolution,
            "channels": {int(k): int(v) for k, v in channels.items()},
            "img_channels": img_channels,
        }
        self.trunk = Trunk(resolution, channels, img_channels)
        c4 = channels[4]
        self.fc = FullyConnected(c4 * 16, 512, activation=True)
        self.out = FullyConnected(512, num_ws * w_dim)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.trunk(img).flatten(1)
        d = self.out(self.fc(x)).reshape(-1, self.num_ws, self.w_dim)
        return d + self.w_avg  # [N, num_ws, w_dim]


# ------------------------------------------------------------------------ classifier and features


class AttributeClassifier(nn.Module):
    """Predicts the renderer's binary attributes (logits) and yaw (regression).

    Its first layers double as the perceptual feature network (no VGG weights can be
    downloaded here): ``features(img)`` returns channel-normalized activations at
    resolution/4.
    """

    def __init__(
        self, *, resolution: int = 64, num_binary: int, num_regression: int = 1, width: int = 32
    ):
        super().__init__()
        self.config = {
            "resolution": resolution,
            "num_binary": num_binary,
            "num_regression": num_regression,
            "width": width,
        }
        self.num_binary = num_binary
        c = width
        self.stem = nn.ModuleList(
            [
                Conv2d(3, c, 3),
                Conv2d(c, 2 * c, 3, down=True),  # R/2
                Conv2d(2 * c, 2 * c, 3),
                Conv2d(2 * c, 4 * c, 3, down=True),  # R/4: perceptual features
            ]
        )
        self.head_convs = nn.ModuleList(
            [
                Conv2d(4 * c, 4 * c, 3, down=True),  # R/8
                Conv2d(4 * c, 8 * c, 3, down=True),  # R/16
            ]
        )
        r = resolution // 16
        self.fc = FullyConnected(8 * c * r * r, 256, activation=True)
        self.out = FullyConnected(256, num_binary + num_regression)

    def trunk(self, img: torch.Tensor) -> torch.Tensor:
        x = img
        for layer in self.stem:
            x = layer(x)
        return x  # [N, 4c, R/4, R/4]

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """Perceptual features: channel-normalized trunk activations [N, 4c, R/4, R/4]."""
        f = self.trunk(img)
        return f * torch.rsqrt(f.square().mean(dim=1, keepdim=True) + 1e-6)

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        """Penultimate activations [N, 256]: the feature space for KID."""
        x = self.trunk(img)
        for layer in self.head_convs:
            x = layer(x)
        return self.fc(x.flatten(1))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """[N, num_binary + num_regression]: logits, then regressions."""
        return self.out(self.embed(img))


class VGG16Features(nn.Module):
    """Optional perceptual network: torchvision VGG16 ``features`` up to conv4_3.

    Accepts a user-supplied torchvision VGG16 state dict (keys ``features.N.weight``);
    images are mapped from [-1, 1] to ImageNet normalization inside.
    """

    # torchvision indices of the conv layers up to conv4_3 (ReLU after each, max-pool at 4, 9, 16)
    _LAYOUT: typing.ClassVar[list] = [
        (0, 3, 64),
        (2, 64, 64),
        "M",
        (5, 64, 128),
        (7, 128, 128),
        "M",
        (10, 128, 256),
        (12, 256, 256),
        (14, 256, 256),
        "M",
        (17, 256, 512),
        (19, 512, 512),
        (21, 512, 512),
    ]

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleDict()
        for item in self._LAYOUT:
            if item != "M":
                idx, cin, cout = item
                self.convs[str(idx)] = nn.Conv2d(cin, cout, 3, padding=1)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def load_torchvision(self, state_dict: dict[str, torch.Tensor]) -> None:
        mine = {}
        for idx in self.convs:
            for p in ("weight", "bias"):
                key = f"features.{idx}.{p}"
                if key not in state_dict:
                    raise KeyError(f"VGG16 state dict lacks {key!r}")
                mine[f"convs.{idx}.{p}"] = state_dict[key]
        self.load_state_dict({**mine, "mean": self.mean, "std": self.std})

    def features(self, img: torch.Tensor) -> torch.Tensor:
        x = ((img + 1) / 2 - self.mean) / self.std
        for item in self._LAYOUT:
            if item == "M":
                # 2x2 max-pool written as a box-free reshape so its backward exports
                n, c, h, w = x.shape
                x = x.reshape(n, c, h // 2, 2, w // 2, 2).amax(dim=(3, 5))
            else:
                x = F.relu(self.convs[str(item[0])](x))
        return x  # [N, 512, R/8, R/8]

    forward = features
