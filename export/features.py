"""Perceptual feature networks for any generator's domain (``stylegate export --features``).

The inversion step's feature term is the MSE of ``features(image)`` against the target's
(export/graphs.py); every network here returns ``features(img)`` for images in [-1, 1],
channel-normalized (or, for ``none``, contrast-normalized) so the term is O(1) like the
pixel term and the gateway's default weights carry over. Three sources
(docs/design.md, "Community checkpoints"; issue 10):

- ``VGG16Features``: VGG16 weights the user already has, as torchvision's ``vgg16`` state
  dict or the TorchScript ``vgg16.pt`` the NVlabs projector loads (read as data only, see
  ``read_torchscript_tensors``); the conv stack up to ``conv3_3`` or ``conv4_3``.
- ``DiscriminatorFeatures``: the first blocks of the checkpoint's own discriminator, NVlabs
  (``b{R}.fromrgb``, ``b{R}.conv0/conv1/skip``) or rosinality (``convs.0``, ``convs.{i}``)
  layout, with their FIR downsampling, equalized-lr gains, scaled leaky ReLU and clamp.
- ``StructureFeatures``: no learned network: SSIM's structure term as a feature MSE.

Every op has a backward that the step graph's export handles (convolutions, reshapes,
elementwise): max-pooling is a reshape + ``amax`` and resizing a strided box filter or a
nearest-neighbour expand, never pooling/interpolation ops without an ONNX backward rule.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stylegate.gan import networks as N

FEATURE_CHOICES = ("discriminator", "none")  # or a path to VGG16 weights


class FeatureNetworkError(ValueError):
    """The weights given for a feature network are not what they claim to be."""


def channel_normalize(f: torch.Tensor) -> torch.Tensor:
    """Unit RMS over channels at each position (LPIPS-style). [N, C, H, W] -> same."""
    return f * torch.rsqrt(f.square().mean(dim=1, keepdim=True) + 1e-6)


def box_downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Area downsampling by an integer factor as a strided depthwise box convolution (its
    backward is a transposed convolution, which the step export handles)."""
    if factor == 1:
        return x
    c = x.shape[1]
    k = torch.full((c, 1, factor, factor), 1.0 / factor**2, dtype=x.dtype, device=x.device)
    return F.conv2d(x, k, stride=factor, groups=c)


def nearest_upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upsampling as expand + reshape. [N, C, H, W] -> [N, C, fH, fW]."""
    if factor == 1:
        return x
    n, c, h, w = x.shape
    x = x[:, :, :, None, :, None].expand(n, c, h, factor, w, factor)
    return x.reshape(n, c, h * factor, w * factor)


def resize_pow2(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a square image by a power-of-two factor (area down, nearest up)."""
    r = x.shape[-1]
    if size < r:
        return box_downsample(x, r // size)
    return nearest_upsample(x, size // r)


# --------------------------------------------------------------------------- VGG16

# torchvision ``vgg16().features`` conv indices, in order, with (in, out) channels; a 2x2
# max-pool follows the convs named in _POOL_AFTER.
VGG16_CONVS: tuple[tuple[int, int, int], ...] = (
    (0, 3, 64),
    (2, 64, 64),
    (5, 64, 128),
    (7, 128, 128),
    (10, 128, 256),
    (12, 256, 256),
    (14, 256, 256),
    (17, 256, 512),
    (19, 512, 512),
    (21, 512, 512),
    (24, 512, 512),
    (26, 512, 512),
    (28, 512, 512),
)
_POOL_AFTER = {2, 7, 14, 21}
# Feature layer -> number of convs used (its output is taken after the ReLU).
VGG16_LAYERS = {"conv2_2": 4, "conv3_3": 7, "conv4_3": 10, "conv5_3": 13}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16Features(nn.Module):
    """torchvision VGG16 ``features`` up to ``layer``, channel-normalized.

    Images in [-1, 1] go to [0, 1], ImageNet normalization, then are resized by a power of
    two to ``input_size`` (the NVlabs projector area-downsamples to 256 before LPIPS; small
    images are upsampled so conv4_3 keeps some spatial extent).
    """

    def __init__(
        self,
        weights: list[tuple[torch.Tensor, torch.Tensor]],  # (weight, bias) of VGG16_CONVS, in order
        *,
        layer: str = "conv3_3",  # output layer, a key of VGG16_LAYERS
        input_size: int | None = None,  # None: the image's own resolution
    ):
        super().__init__()
        if layer not in VGG16_LAYERS:
            raise ValueError(f"layer must be one of {sorted(VGG16_LAYERS)}, got {layer!r}")
        n = VGG16_LAYERS[layer]
        if len(weights) < n:
            raise FeatureNetworkError(f"{layer} needs {n} conv layers, got {len(weights)}")
        self.layer = layer
        self.input_size = input_size
        self.pool_after = [VGG16_CONVS[i][0] in _POOL_AFTER for i in range(n)]
        self.weights = nn.ParameterList(
            nn.Parameter(w.detach().float().clone(), requires_grad=False) for w, _ in weights[:n]
        )
        self.biases = nn.ParameterList(
            nn.Parameter(b.detach().float().clone(), requires_grad=False) for _, b in weights[:n]
        )
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def features(self, img: torch.Tensor) -> torch.Tensor:
        x = ((img + 1) * 0.5 - self.mean) / self.std  # [N, 3, R, R]
        if self.input_size is not None and self.input_size != x.shape[-1]:
            x = resize_pow2(x, self.input_size)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = F.relu(F.conv2d(x, w, b, padding=1))
            if self.pool_after[i] and i < len(self.weights) - 1:
                n, c, h, wd = x.shape
                x = x.reshape(n, c, h // 2, 2, wd // 2, 2).amax(dim=(3, 5))
        return channel_normalize(x)  # [N, C, S / 2^pools, ...]

    forward = features


def vgg16_from_state_dict(
    sd: Mapping[str, Any], *, source: str = "state dict"
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The 13 (weight, bias) pairs of a torchvision ``vgg16`` state dict (``features.{i}.*``;
    a ``module.`` or ``vgg.`` prefix is tolerated). Refuses missing keys and wrong shapes."""
    keys = [k for k in sd if isinstance(k, str)]
    prefix = ""
    for p in ("", "module.", "vgg.", "vgg16."):
        if f"{p}features.0.weight" in sd:
            prefix = p
            break
    else:
        sample = ", ".join(keys[:4]) or "none"
        raise FeatureNetworkError(
            f"{source}: not a torchvision vgg16 state dict: no 'features.0.weight' "
            f"(found keys like {sample})"
        )
    out = []
    for idx, cin, cout in VGG16_CONVS:
        pair = []
        for name, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,))):
            key = f"{prefix}features.{idx}.{name}"
            t = sd.get(key)
            if not isinstance(t, torch.Tensor):
                raise FeatureNetworkError(f"{source}: vgg16 state dict lacks {key!r}")
            if tuple(t.shape) != shape:
                raise FeatureNetworkError(
                    f"{source}: {key} has shape {tuple(t.shape)}, VGG16 expects {shape}"
                )
            pair.append(t)
        out.append((pair[0], pair[1]))
    return out


def vgg16_from_tensors(
    tensors: list[torch.Tensor], *, source: str = "archive"
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Find VGG16's 13 convs in an ordered list of tensors by their shapes (a TorchScript
    archive names its attributes freely): each conv weight in order, each followed by its
    bias (the next unused 1-D tensor of the output width)."""
    out = []
    pos = 0
    for idx, cin, cout in VGG16_CONVS:
        shape = (cout, cin, 3, 3)
        while pos < len(tensors) and tuple(tensors[pos].shape) != shape:
            pos += 1
        if pos == len(tensors):
            raise FeatureNetworkError(
                f"{source}: no VGG16 conv weight of shape {shape} (features.{idx}) after the "
                f"{len(out)} found; not a VGG16 network"
            )
        weight = tensors[pos]
        pos += 1
        j = next((j for j in range(pos, len(tensors)) if tuple(tensors[j].shape) == (cout,)), None)
        if j is None:
            raise FeatureNetworkError(f"{source}: no bias of shape ({cout},) for features.{idx}")
        out.append((weight, tensors[j]))
    return out


# TorchScript archives are zip files whose ``data.pkl`` holds the module tree (objects of
# ``__torch__.*`` classes, tensors as persistent ids into ``data/``) and whose ``code/``
# holds TorchScript that ``torch.jit.load`` compiles. That code can call any registered
# operator (file I/O included), so it is never loaded here: the pickles are read by a
# restricted unpickler that rebuilds tensors and plain containers and nothing else, and
# the network itself is rebuilt from the tensors' shapes.


class _ScriptObject:
    """What a ``__torch__.*`` object becomes: its pickled state, no behaviour."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Storage:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "BoolStorage": torch.bool,
}


def _identity_tag(value: Any, *_: Any) -> Any:
    return value


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, folder: str, source: str):
        import io

        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._folder = folder  # "<root>/data" for data.pkl, "<root>/constants" for constants.pkl
        self._source = source
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return type(name, (_ScriptObject,), {})
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(_STORAGE_DTYPES[name])
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda data, *_: data
        if (module, name) == ("collections", "OrderedDict"):
            import collections

            return collections.OrderedDict
        if module == "torch.jit._pickle" and (
            name.startswith("build_") or name == "restore_type_tag"
        ):
            return _identity_tag
        raise FeatureNetworkError(
            f"{self._source}: refusing to load {module}.{name} (only tensors and plain "
            "containers are read from a TorchScript archive)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise FeatureNetworkError(f"{self._source}: unexpected persistent id {pid!r}")
        _, storage, key, _, numel = pid
        if not isinstance(storage, _Storage):
            raise FeatureNetworkError(f"{self._source}: unexpected storage type {storage!r}")
        if key not in self._storages:
            raw = bytearray(self._archive.read(f"{self._folder}/{key}"))
            flat = torch.frombuffer(raw, dtype=storage.dtype) if raw else torch.empty(0)
            if flat.numel() != int(numel):
                raise FeatureNetworkError(f"{self._source}: storage {key} has the wrong size")
            self._storages[key] = flat
        return self._storages[key]

    @staticmethod
    def _rebuild_tensor(flat, offset, size, stride, *_) -> torch.Tensor:
        return flat.as_strided(tuple(size), tuple(stride), int(offset)).clone()


def _walk_tensors(obj: Any, seen: set[int]) -> Iterator[torch.Tensor]:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, _ScriptObject):
        yield from _walk_tensors(getattr(obj, "state", None), seen)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _walk_tensors(v, seen)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _walk_tensors(v, seen)


def is_torchscript(path: str | os.PathLike) -> bool:
    """A zip whose members include TorchScript ``code/`` (a ``torch.save`` zip has none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n for n in z.namelist())


def read_torchscript_tensors(path: str | os.PathLike) -> list[torch.Tensor]:
    """Every tensor of a TorchScript archive, module attributes (``data.pkl``) first, then
    traced constants (``constants.pkl``), each in pickle order; no code is run."""
    source = str(path)
    tensors: list[torch.Tensor] = []
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        roots = sorted({n.split("/", 1)[0] for n in names if n.endswith("/data.pkl")})
        if not roots:
            raise FeatureNetworkError(f"{source}: no data.pkl: not a TorchScript archive")
        root = roots[0]
        seen: set[int] = set()
        for member in ("data", "constants"):
            if f"{root}/{member}.pkl" in names:
                raw = z.read(f"{root}/{member}.pkl")
                obj = _ArchiveUnpickler(raw, z, f"{root}/{member}", source).load()
                tensors.extend(_walk_tensors(obj, seen))
    return tensors


def load_vgg16_weights(path: str | os.PathLike) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """VGG16 conv weights from a torchvision state dict file or a TorchScript ``vgg16.pt``."""
    path = Path(path)
    if not path.is_file():
        raise FeatureNetworkError(f"{path}: no such file")
    if is_torchscript(path):
        return vgg16_from_tensors(read_torchscript_tensors(path), source=str(path))
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FeatureNetworkError(f"{path}: not a torch state dict file ({first})") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise FeatureNetworkError(f"{path}: expected a state dict, found {type(sd).__name__}")
    return vgg16_from_state_dict(sd, source=str(path))


def vgg16_features(
    path: str | os.PathLike, *, resolution: int, layer: str | None = None
) -> VGG16Features:
    """The VGG16 feature network for a generator of ``resolution``: conv4_3 from 128 px
    (IDInvert's layer), conv3_3 below (conv4_3 of a 64 px image is only 8x8); inputs over
    256 px are area-downsampled to 256 like the NVlabs projector's."""
    if layer is None:
        layer = "conv4_3" if resolution >= 128 else "conv3_3"
    size = min(resolution, 256)
    return VGG16Features(load_vgg16_weights(path), layer=layer, input_size=size).eval()


# --------------------------------------------------------------------------- discriminator


def _check_fir(t: torch.Tensor | None, key: str) -> None:
    """Both layouts store the normalized [1,3,3,1] outer product (sum 1) they downsample with."""
    if t is None:
        return
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    if tuple(t.shape) != (4, 4) or not torch.allclose(t.float(), k / k.sum(), atol=1e-6):
        raise FeatureNetworkError(f"{key}: only the [1,3,3,1] resampling filter is supported")


def fir_downsample2x(x: torch.Tensor) -> torch.Tensor:
    """NVlabs ``downsample2d``: pad 1, [1,3,3,1] FIR (gain 1), keep every other pixel, as one
    strided depthwise convolution. [N, C, H, W] -> [N, C, H/2, W/2]."""
    c = x.shape[1]
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=x.dtype, device=x.device)
    k = k[:, None] * k[None, :]
    k = (k / k.sum()).expand(c, 1, 4, 4)
    return F.conv2d(F.pad(x, (1, 1, 1, 1)), k, stride=2, groups=c)


class DConv(nn.Module):
    """One discriminator conv: equalized-lr weight, optional FIR 2x downsampling (the filter
    padded so a 3x3 stride-2 conv, or a 1x1 one, lands on H/2), then bias, leaky ReLU times
    sqrt(2) (when ``activation``), a ``gain`` and an optional clamp, as NVlabs'
    ``Conv2dLayer`` + ``bias_act``; rosinality's ``ConvLayer`` is the same math."""

    def __init__(
        self,
        weight: torch.Tensor,  # [out, in, k, k], unscaled (equalized learning rate)
        bias: torch.Tensor | None,  # [out] or None
        *,
        down: bool = False,  # FIR [1,3,3,1] then stride 2
        activation: bool = True,  # lrelu(0.2) * sqrt(2)
        gain: float = 1.0,  # extra output gain (sqrt(0.5) in residual blocks)
        clamp: float | None = None,  # NVlabs conv_clamp (scaled by gain, like theirs)
    ):
        super().__init__()
        k = weight.shape[-1]
        self.weight = nn.Parameter(weight.detach().float().clone(), requires_grad=False)
        self.bias = (
            nn.Parameter(bias.detach().float().clone(), requires_grad=False)
            if bias is not None
            else None
        )
        self.weight_gain = 1.0 / math.sqrt(weight.shape[1] * k * k)
        self.down = down
        self.padding = k // 2
        self.activation = activation
        self.gain = gain * (math.sqrt(2.0) if activation else 1.0)
        self.clamp = clamp * gain if clamp is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.down:
            pad = (w.shape[-1] - 1) // 2 + 1  # 2 for a 3x3 conv, 1 for 1x1
            x = N.fir_filter2d(x, (pad, pad), 1.0)
            x = F.conv2d(x, w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.padding)
        if self.bias is not None:
            x = x + self.bias[None, :, None, None]
        if self.activation:
            x = F.leaky_relu(x, 0.2)
        if self.gain != 1.0:
            x = x * self.gain
        if self.clamp is not None:
            x = x.clamp(-self.clamp, self.clamp)
        return x


class DBlock(nn.Module):
    """A residual (or plain, ``skip`` None) downsampling block: (skip(x) + conv1(conv0(x)))
    with the sqrt(0.5) folded into both branches' gains."""

    def __init__(
        self, conv0: DConv, conv1: DConv, skip: DConv | None, fromrgb: DConv | None = None
    ):
        super().__init__()
        self.conv0, self.conv1, self.skip = conv0, conv1, skip
        self.fromrgb = fromrgb  # NVlabs 'skip' architecture: every block also reads the image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.conv0(x))
        return y if self.skip is None else self.skip(x) + y


class DiscriminatorFeatures(nn.Module):
    """fromRGB and the first ``len(blocks)`` blocks of a StyleGAN2 discriminator:
    image [N, 3, R, R] -> channel-normalized activations [N, C, R / 2^blocks, ...]."""

    def __init__(self, fromrgb: DConv, blocks: list[DBlock], *, description: str = ""):
        super().__init__()
        self.fromrgb = fromrgb
        self.blocks = nn.ModuleList(blocks)
        self.description = description

    def features(self, img: torch.Tensor) -> torch.Tensor:
        x = self.fromrgb(img)
        for block in self.blocks:
            if block.fromrgb is not None:  # NVlabs 'skip' D: add the downsampled image's fromRGB
                img = fir_downsample2x(img)
                x = x + block.fromrgb(img)
            x = block(x)
        return channel_normalize(x)

    forward = features


def discriminator_layout(sd: Mapping[str, torch.Tensor]) -> str:
    """ "nvlabs" or "rosinality", from the key names."""
    if any(re.fullmatch(r"b\d+\.fromrgb\.weight", k) for k in sd):
        return "nvlabs"
    if "convs.0.0.weight" in sd:
        return "rosinality"
    sample = ", ".join(list(sd)[:4]) or "none"
    raise FeatureNetworkError(
        "not a StyleGAN2 discriminator state dict: neither NVlabs b{R}.fromrgb.* nor "
        f"rosinality convs.0.* (found keys like {sample})"
    )


def _get(sd: Mapping[str, torch.Tensor], key: str, ndim: int | None = None) -> torch.Tensor:
    t = sd.get(key)
    if not isinstance(t, torch.Tensor):
        raise FeatureNetworkError(f"discriminator state dict lacks {key!r}")
    if ndim is not None and t.ndim != ndim:
        raise FeatureNetworkError(f"{key}: expected {ndim} dims, found shape {tuple(t.shape)}")
    return t


def _nvlabs_d(sd, num_blocks: int, conv_clamp: float | None) -> DiscriminatorFeatures:
    res = sorted(
        (int(m.group(1)) for k in sd if (m := re.fullmatch(r"b(\d+)\.conv0\.weight", k))),
        reverse=True,
    )
    if not res or f"b{res[0]}.fromrgb.weight" not in sd:
        raise FeatureNetworkError("NVlabs discriminator without b{R}.fromrgb/conv0 weights")
    num_blocks = min(num_blocks, len(res))
    top = res[0]
    fromrgb = DConv(
        _get(sd, f"b{top}.fromrgb.weight", 4), _get(sd, f"b{top}.fromrgb.bias", 1), clamp=conv_clamp
    )
    blocks = []
    for r in res[:num_blocks]:
        p = f"b{r}"
        for key in (
            f"{p}.resample_filter",
            f"{p}.conv1.resample_filter",
            f"{p}.skip.resample_filter",
        ):
            _check_fir(sd.get(key), key)
        resnet = f"{p}.skip.weight" in sd
        g = math.sqrt(0.5) if resnet else 1.0
        conv0 = DConv(
            _get(sd, f"{p}.conv0.weight", 4), _get(sd, f"{p}.conv0.bias", 1), clamp=conv_clamp
        )
        conv1 = DConv(
            _get(sd, f"{p}.conv1.weight", 4),
            _get(sd, f"{p}.conv1.bias", 1),
            down=True,
            gain=g,
            clamp=conv_clamp,
        )
        skip = (
            DConv(_get(sd, f"{p}.skip.weight", 4), None, down=True, activation=False, gain=g)
            if resnet
            else None
        )
        extra = None
        if r != top and f"{p}.fromrgb.weight" in sd:
            extra = DConv(sd[f"{p}.fromrgb.weight"], sd.get(f"{p}.fromrgb.bias"), clamp=conv_clamp)
        blocks.append(DBlock(conv0, conv1, skip, extra))
    names = ", ".join(f"b{r}" for r in res[:num_blocks])
    return DiscriminatorFeatures(fromrgb, blocks, description=f"NVlabs discriminator {names}")


def _rosinality_d(sd, num_blocks: int) -> DiscriminatorFeatures:
    idx = sorted(
        {int(m.group(1)) for k in sd if (m := re.fullmatch(r"convs\.(\d+)\.conv1\..*", k))}
    )
    if not idx:
        raise FeatureNetworkError("rosinality discriminator without convs.{i}.conv1 blocks")
    num_blocks = min(num_blocks, len(idx))
    # ConvLayer = Sequential([Blur if downsampling], EqualConv2d, [FusedLeakyReLU]): the conv's
    # weight is at .0 (or .1 after a blur), the activation's bias after it.
    fromrgb = DConv(_get(sd, "convs.0.0.weight", 4), _get(sd, "convs.0.1.bias", 1))
    g = math.sqrt(0.5)  # ResBlock: (out + skip) / sqrt(2)
    blocks = []
    for i in idx[:num_blocks]:
        p = f"convs.{i}"
        _check_fir(sd.get(f"{p}.conv2.0.kernel"), f"{p}.conv2.0.kernel")
        _check_fir(sd.get(f"{p}.skip.0.kernel"), f"{p}.skip.0.kernel")
        conv0 = DConv(_get(sd, f"{p}.conv1.0.weight", 4), _get(sd, f"{p}.conv1.1.bias", 1))
        conv1 = DConv(
            _get(sd, f"{p}.conv2.1.weight", 4), _get(sd, f"{p}.conv2.2.bias", 1), down=True, gain=g
        )
        skip = DConv(_get(sd, f"{p}.skip.1.weight", 4), None, down=True, activation=False, gain=g)
        blocks.append(DBlock(conv0, conv1, skip))
    names = ", ".join(f"convs.{i}" for i in idx[:num_blocks])
    return DiscriminatorFeatures(fromrgb, blocks, description=f"rosinality discriminator {names}")


def discriminator_features(
    sd: Mapping[str, torch.Tensor],
    *,
    num_blocks: int = 2,  # residual blocks after fromRGB: features at R / 2^num_blocks
    conv_clamp: float | None = None,  # NVlabs D's conv_clamp (256 in ADA's auto config)
) -> DiscriminatorFeatures:
    """Perceptual features from a checkpoint's own discriminator, NVlabs or rosinality keys."""
    layout = discriminator_layout(sd)
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if layout == "nvlabs":
        net = _nvlabs_d(sd, num_blocks, conv_clamp)
    else:
        net = _rosinality_d(sd, num_blocks)
    return net.eval().requires_grad_(False)


# --------------------------------------------------------------------------- no network


class StructureFeatures(nn.Module):
    """``--features none``: SSIM's structure term written as a feature MSE.

    Each colour channel minus its local (Gaussian-window) mean, over its local standard
    deviation (regularized by SSIM's C2 for images in [-1, 1]). For two such maps a, b of
    unit local variance, mean((a - b)^2) = 2 (1 - correlation), i.e. 2 (1 - s) with s the
    structure component of SSIM, so the pixel term (luminance, contrast) plus this one
    reproduce SSIM's parts at the cost of two small depthwise convolutions.
    """

    def __init__(self, *, window: int = 7, sigma: float = 1.5, c2: float = (0.03 * 2) ** 2):
        super().__init__()
        x = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
        k = torch.exp(-(x**2) / (2 * sigma**2))
        k = k / k.sum()
        self.register_buffer(
            "kernel", (k[:, None] * k[None, :]).expand(3, 1, window, window).clone()
        )
        self.c2 = c2
        self.description = f"structure (SSIM window {window}, sigma {sigma})"

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=self.kernel.shape[-1] // 2, groups=3)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        # Normalized convolution: divide by the window mass inside the image so borders
        # (zero padding) see an unbiased local mean.
        mass = self._blur(torch.ones_like(img))
        mu = self._blur(img) / mass
        d = img - mu
        var = self._blur(d.square()) / mass
        return d * torch.rsqrt(var + self.c2)  # [N, 3, R, R]

    forward = features


def build_feature_net(
    choice: str | os.PathLike,
    *,
    resolution: int,
    discriminator: Mapping[str, torch.Tensor] | None = None,
    conv_clamp: float | None = None,
) -> nn.Module:
    """``--features``: "discriminator" (needs the checkpoint's D), "none", or a VGG16 file."""
    if str(choice) == "discriminator":
        if discriminator is None:
            raise FeatureNetworkError(
                "--features discriminator: the checkpoint has no discriminator; "
                "use --features none or --features VGG16_FILE"
            )
        return discriminator_features(discriminator, conv_clamp=conv_clamp)
    if str(choice) == "none":
        return StructureFeatures().eval()
    return vgg16_features(choice, resolution=resolution)


def describe(net: nn.Module) -> str:
    if isinstance(net, VGG16Features):
        return f"VGG16 {net.layer} (input {net.input_size} px)"
    return str(getattr(net, "description", type(net).__name__))
