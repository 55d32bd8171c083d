"""Users' StyleGAN2 checkpoints -> stylegate's ``Generator`` (and their discriminator's weights).

Two community layouts (docs/design.md, "Users' checkpoints"), told apart by content:
- rosinality/stylegan2-pytorch ``.pt`` (a ``torch.save`` zip: ``g``, ``d``, ``g_ema``, the
  optimizers, ``args``; converted ones carry ``latent_avg``), loaded with
  ``torch.load(weights_only=True)``;
- an NVlabs network pickle (stylegan2-ada-pytorch, or the stylegan3 repository with
  ``--cfg=stylegan2``: ``G``, ``D``, ``G_ema``, ``augment_pipe``, ``training_set_kwargs``),
  loaded with ``export.safe_pickle`` (a restricted unpickler: tensors and containers only,
  no code).

``load_checkpoint(path)`` is the entry point; every refusal is a ``ConversionError`` whose
message names the file, what it holds and what was expected.

What maps exactly: the mapping network (pixel norm, equalized-lr FC layers with lr 0.01 and
scaled leaky ReLU; NVlabs' class embedding of conditional networks), style affines,
modulated/demodulated 3x3 convs, constant input, noise (const buffers x strength, added
before bias + activation), toRGB, NVlabs' ``conv_clamp`` and W+ indexing. Both repositories
upsample by a stride-2 transposed convolution followed by a [1,3,3,1] FIR blur (and the skip
images by zero insertion + the same FIR), where ours uses nearest-neighbour copies: an
imported generator is built with ``Generator(resample="fir")``, which implements theirs.

NVlabs' fp16 layers (``num_fp16_res``) run in fp32 here: the import reproduces NVlabs' own
fp32 forward (``force_fp32=True``), which differs from their fp16 path by ~1e-2.
Refused with a clear error: non-skip architectures (``orig``, ``resnet``), other blur
kernels, StyleGAN3 (``-t``/``-r``) and TensorFlow-era pickles.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from stylegate.export import safe_pickle
from stylegate.gan import networks as N

FORMATS = ("auto", "nvlabs", "rosinality")
MAX_RESOLUTION = 1024

# torch.save's legacy (pre-1.6, non-zip) format starts with a pickled magic number.
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_STYLEGAN3 = (
    "a StyleGAN3 (config -t/-r) generator: stylegate serves StyleGAN2-architecture "
    "generators; train with the stylegan3 repository's --cfg=stylegan2 or stylegan2-ada-pytorch"
)
_TENSORFLOW = (
    "a TensorFlow-era NVlabs pickle (dnnlib.tflib.network.Network): convert it to a PyTorch "
    "pickle first with NVlabs' legacy.py (stylegan2-ada-pytorch or stylegan3 repository)"
)


class ConversionError(ValueError):
    """The checkpoint is not a supported StyleGAN2 layout (the message says what it is)."""


class UnsafeCheckpointError(ConversionError):
    """The checkpoint's pickle references a global that could run code; nothing was run."""


@dataclasses.dataclass
class ImportedCheckpoint:
    """A user's checkpoint, imported."""

    generator: N.Generator  # stylegate Generator(resample="fir"), eval, no grad
    discriminator: dict[str, torch.Tensor] | None  # the source's own D state dict (its keys)
    source_format: str  # "nvlabs" | "rosinality"
    c_dim: int  # class-label size, 0: unconditional
    description: str  # "nvlabs network-snapshot-000200.pkl: 256px, ..." (for model metadata)


def _fir_kernel(gain: float) -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    return k / k.sum() * gain


def _check_kernel(t: torch.Tensor, gain: float, key: str) -> None:
    t = t.float()
    if t.shape != (4, 4) or not torch.allclose(t, _fir_kernel(gain), atol=1e-6):
        raise ConversionError(f"{key}: only the [1,3,3,1] blur is supported")


def _build(
    sd_ours: dict[str, torch.Tensor],
    *,
    z_dim: int,
    w_dim: int,
    resolution: int,
    channels: dict[int, int],
    mapping_layers: int,
    img_channels: int,
    conv_clamp: float | None = None,
    c_dim: int = 0,
) -> N.Generator:
    if resolution > MAX_RESOLUTION or resolution < 4 or resolution & (resolution - 1):
        raise ConversionError(
            f"unsupported resolution {resolution} (powers of two, 4..{MAX_RESOLUTION})"
        )
    g = N.Generator(
        z_dim=z_dim,
        w_dim=w_dim,
        resolution=resolution,
        channels=channels,
        mapping_layers=mapping_layers,
        img_channels=img_channels,
        resample="fir",
        conv_clamp=conv_clamp,
        c_dim=c_dim,
    )
    expected = g.state_dict()
    unused = sorted(set(sd_ours) - set(expected))
    if unused:
        raise ConversionError(f"unexpected tensors {unused[:5]}{' ...' if len(unused) > 5 else ''}")
    missing = sorted(set(expected) - set(sd_ours))
    if missing:
        raise ConversionError(
            f"checkpoint lacks tensors for {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    for k, v in sd_ours.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ConversionError(
                f"{k}: shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
            )
    g.load_state_dict({k: v.float() for k, v in sd_ours.items()})
    return g.eval().requires_grad_(False)


def _fill_w_avg(g: N.Generator, n: int = 4096) -> None:
    with torch.no_grad():
        z = torch.randn(n, g.z_dim, generator=torch.Generator().manual_seed(0))
        g.mapping.w_avg.copy_(g.mapping(z).mean(0))


# --------------------------------------------------------------------------- rosinality


def from_rosinality(
    sd: dict[str, torch.Tensor], latent_avg: torch.Tensor | None = None
) -> N.Generator:
    """A rosinality ``g_ema`` state dict -> Generator(resample="fir")."""
    n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
    n_up = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    if n_mlp == 0 or "input.input" not in sd or "conv1.conv.weight" not in sd:
        raise ConversionError(
            "not a rosinality stylegan2-pytorch generator (no style.*, input.input, conv1.*)"
        )
    resolution = 2 ** (n_up + 2)
    w_dim, z_dim = sd["style.1.weight"].shape
    channels = {4: int(sd["input.input"].shape[1])}
    for j in range(n_up):
        channels[2 ** (j + 3)] = int(sd[f"convs.{2 * j}.conv.weight"].shape[1])
    out: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        out[f"mapping.layers.{i}.weight"] = sd[f"style.{i + 1}.weight"]
        out[f"mapping.layers.{i}.bias"] = sd[f"style.{i + 1}.bias"]

    def styled(src: str, dst: str, noise: str) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.conv.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.conv.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape([])
        out[f"{dst}.noise_const"] = sd[f"noises.{noise}"].reshape(sd[f"noises.{noise}"].shape[-2:])
        if f"{src}.conv.blur.kernel" in sd:
            _check_kernel(sd[f"{src}.conv.blur.kernel"], 4.0, f"{src}.conv.blur.kernel")

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.conv.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.conv.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)
        if f"{src}.upsample.kernel" in sd:
            _check_kernel(sd[f"{src}.upsample.kernel"], 4.0, f"{src}.upsample.kernel")

    out["synthesis.blocks.0.const"] = sd["input.input"][0]
    styled("conv1", "synthesis.blocks.0.conv1", "noise_0")
    to_rgb("to_rgb1", "synthesis.blocks.0.torgb")
    for j in range(n_up):
        styled(f"convs.{2 * j}", f"synthesis.blocks.{j + 1}.conv0", f"noise_{2 * j + 1}")
        styled(f"convs.{2 * j + 1}", f"synthesis.blocks.{j + 1}.conv1", f"noise_{2 * j + 2}")
        to_rgb(f"to_rgbs.{j}", f"synthesis.blocks.{j + 1}.torgb")
    out["mapping.w_avg"] = (latent_avg if latent_avg is not None else torch.zeros(w_dim)).reshape(
        -1
    )
    g = _build(
        out,
        z_dim=int(z_dim),
        w_dim=int(w_dim),
        resolution=resolution,
        channels=channels,
        mapping_layers=n_mlp,
        img_channels=int(sd["to_rgb1.conv.weight"].shape[1]),
    )
    if latent_avg is None:
        _fill_w_avg(g)
    return g


# --------------------------------------------------------------------------- NVlabs


def from_nvlabs(sd: dict[str, torch.Tensor], *, conv_clamp: float | None = None) -> N.Generator:
    """An NVlabs StyleGAN2 ``G_ema`` state dict (stylegan2-ada-pytorch ``training.networks``
    or stylegan3's ``training.networks_stylegan2``) -> Generator(resample="fir").
    ``conv_clamp``: the layers' activation clamp (``synthesis_kwargs.conv_clamp``)."""
    if any(k.startswith(("synthesis.input.", "synthesis.L0")) for k in sd) or any(
        k.endswith("magnitude_ema") for k in sd
    ):
        raise ConversionError(f"found {_STYLEGAN3}")
    n_fc = len([k for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    res = sorted(
        int(m.group(1)) for k in sd if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k))
    )
    if n_fc == 0 or not res or res[0] != 4:
        raise ConversionError(
            "found no StyleGAN2 generator (expected mapping.fc*, synthesis.b4.* tensors)"
        )
    if any(".skip." in k for k in sd) or any(f"synthesis.b{r}.torgb.weight" not in sd for r in res):
        raise ConversionError(
            "found a non-'skip' synthesis architecture (orig/resnet); expected StyleGAN2's "
            "default 'skip'"
        )
    w_dim = int(sd[f"mapping.fc{n_fc - 1}.weight"].shape[0])
    c_dim = int(sd["mapping.embed.weight"].shape[1]) if "mapping.embed.weight" in sd else 0
    z_dim = int(sd["mapping.fc0.weight"].shape[1]) - (w_dim if c_dim else 0)
    if c_dim and tuple(sd["mapping.embed.weight"].shape) != (w_dim, c_dim):
        raise ConversionError(
            f"mapping.embed.weight: shape {tuple(sd['mapping.embed.weight'].shape)}, expected "
            f"({w_dim}, {c_dim}) (an embedding as wide as w)"
        )
    out: dict[str, torch.Tensor] = {}
    for i in range(n_fc):
        out[f"mapping.layers.{i}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"mapping.layers.{i}.bias"] = sd[f"mapping.fc{i}.bias"]
    if c_dim:
        out["mapping.embed.weight"] = sd["mapping.embed.weight"]
        out["mapping.embed.bias"] = sd["mapping.embed.bias"]
    w_avg = sd.get("mapping.w_avg")
    out["mapping.w_avg"] = w_avg if w_avg is not None else torch.zeros(w_dim)
    channels = {}
    for i, r in enumerate(res):
        src, dst = f"synthesis.b{r}", f"synthesis.blocks.{i}"
        channels[r] = int(sd[f"{src}.conv1.weight"].shape[0])
        if r == 4:
            out[f"{dst}.const"] = sd[f"{src}.const"]
        for layer in ("conv0", "conv1") if r > 4 else ("conv1",):
            s, d = f"{src}.{layer}", f"{dst}.{layer}"
            out[f"{d}.conv.weight"] = sd[f"{s}.weight"]
            out[f"{d}.conv.affine.weight"] = sd[f"{s}.affine.weight"]
            out[f"{d}.conv.affine.bias"] = sd[f"{s}.affine.bias"]
            out[f"{d}.bias"] = sd[f"{s}.bias"]
            if f"{s}.noise_strength" in sd:  # use_noise=False layers have neither
                out[f"{d}.noise_strength"] = sd[f"{s}.noise_strength"].reshape([])
                out[f"{d}.noise_const"] = sd[f"{s}.noise_const"]
            else:
                out[f"{d}.noise_strength"] = torch.zeros([])
                out[f"{d}.noise_const"] = torch.zeros(r, r)
            if f"{s}.resample_filter" in sd:
                _check_kernel(sd[f"{s}.resample_filter"], 1.0, f"{s}.resample_filter")
        out[f"{dst}.torgb.conv.weight"] = sd[f"{src}.torgb.weight"]
        out[f"{dst}.torgb.bias"] = sd[f"{src}.torgb.bias"]
        out[f"{dst}.torgb.conv.affine.weight"] = sd[f"{src}.torgb.affine.weight"]
        out[f"{dst}.torgb.conv.affine.bias"] = sd[f"{src}.torgb.affine.bias"]
        if f"{src}.resample_filter" in sd:
            _check_kernel(sd[f"{src}.resample_filter"], 1.0, f"{src}.resample_filter")
    g = _build(
        out,
        z_dim=z_dim,
        w_dim=w_dim,
        resolution=res[-1],
        channels=channels,
        mapping_layers=n_fc,
        img_channels=int(sd[f"synthesis.b{res[-1]}.torgb.weight"].shape[0]),
        conv_clamp=conv_clamp,
        c_dim=c_dim,
    )
    if w_avg is None:
        _fill_w_avg(g)
    return g


def _submodule(obj, path: str):
    """The pickled submodule at dotted ``path`` (None where absent)."""
    for name in path.split("."):
        state = obj.state if isinstance(obj, safe_pickle.PersistentObject) else obj
        if not isinstance(state, dict):
            return None
        obj = (state.get("_modules") or {}).get(name)
    return obj


def _attr(obj, name: str, default=None):
    state = obj.state if isinstance(obj, safe_pickle.PersistentObject) else obj
    return state.get(name, default) if isinstance(state, dict) else default


def _class_names(obj) -> set[str]:
    """Class names of a pickled persistent module tree."""
    out = set()
    if isinstance(obj, safe_pickle.PersistentObject):
        out.add(obj.class_name)
    state = obj.state if isinstance(obj, safe_pickle.PersistentObject) else obj
    if isinstance(state, dict):
        for sub in (state.get("_modules") or {}).values():
            if sub is not None:
                out |= _class_names(sub)
    return out


def _state_dict(net, what: str) -> dict[str, torch.Tensor]:
    if isinstance(net, dict) and net and all(isinstance(v, torch.Tensor) for v in net.values()):
        return net  # already a state dict
    try:
        return safe_pickle.module_state_dict(net)
    except ValueError as e:
        raise ConversionError(f"{what} is not a pickled network ({e})") from e


def _nvlabs(path: Path) -> ImportedCheckpoint:
    try:
        data = safe_pickle.load(path)
    except safe_pickle.UnsafePickleError as e:
        if e.global_name.startswith("dnnlib.tflib"):
            raise ConversionError(f"{path}: found {_TENSORFLOW}") from None
        raise UnsafeCheckpointError(
            f"{path}: found a pickle that references {e.global_name or 'an unknown global'} "
            "(it could run code on load); expected an NVlabs network pickle of tensors and "
            "persistent networks"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise ConversionError(
            f"{path}: found an unreadable or truncated pickle ({_short(e)}); expected an NVlabs "
            "network pickle"
        ) from None
    key = next((k for k in ("G_ema", "G") if isinstance(data, dict) and k in data), None)
    if key is None:
        found = (
            f"a dict with keys {sorted(map(str, data))[:6]}"
            if isinstance(data, dict)
            else (f"a {type(data).__name__}")
        )
        raise ConversionError(
            f"{path}: found {found}; expected an NVlabs network pickle with 'G_ema'"
        )
    net = data[key]
    if "SynthesisInput" in _class_names(net):
        raise ConversionError(f"{path}: found {_STYLEGAN3}")
    try:
        sd = _state_dict(net, key)
        clamp = _attr(_submodule(net, "synthesis.b4.conv1"), "conv_clamp")
        g = from_nvlabs(sd, conv_clamp=float(clamp) if clamp is not None else None)
    except ConversionError as e:
        raise ConversionError(f"{path}: {key}: {e}") from None
    d = data.get("D")
    disc = _state_dict(d, "D") if d is not None else None
    kind = net.class_name if isinstance(net, safe_pickle.PersistentObject) else "state dict"
    return ImportedCheckpoint(
        generator=g,
        discriminator=disc,
        source_format="nvlabs",
        c_dim=g.c_dim,
        description=_describe("nvlabs", path, g, f"{key} ({kind})"),
    )


# --------------------------------------------------------------------------- rosinality


def _rosinality(path: Path) -> ImportedCheckpoint:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's text: "Weights only load failed ... Unsupported global: GLOBAL os.system ..."
        m = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", str(e), re.IGNORECASE)
        what = f"references {m.group(1)}" if m else "holds objects other than tensors"
        raise UnsafeCheckpointError(
            f"{path}: found a torch checkpoint whose pickle {what} (it could run code on "
            "load); expected a rosinality checkpoint of tensors"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise ConversionError(
            f"{path}: found an unreadable or truncated torch checkpoint ({_short(e)}); expected "
            "a rosinality stylegan2-pytorch checkpoint"
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("g_ema", ckpt), dict):
        raise ConversionError(
            f"{path}: found a {type(ckpt).__name__}; expected a rosinality checkpoint dict "
            "with 'g_ema'"
        )
    sd = ckpt.get("g_ema", ckpt)
    try:
        g = from_rosinality(sd, ckpt.get("latent_avg"))
    except ConversionError as e:
        keys = sorted(map(str, ckpt))[:6]
        raise ConversionError(f"{path}: {e}; top-level keys {keys}") from None
    d = ckpt.get("d")
    return ImportedCheckpoint(
        generator=g,
        discriminator=d if isinstance(d, dict) else None,
        source_format="rosinality",
        c_dim=0,
        description=_describe("rosinality", path, g, "g_ema"),
    )


# --------------------------------------------------------------------------- detection


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _describe(fmt: str, path: Path, g: N.Generator, what: str) -> str:
    parts = [f"{g.resolution}px", f"{g.num_ws} ws", f"w_dim {g.w_dim}"]
    if g.c_dim:
        parts.append(f"{g.c_dim} classes")
    return f"imported from {fmt} {path.name} {what}: {', '.join(parts)}"


def detect_format(path: str | os.PathLike) -> str:
    """ "rosinality" (a ``torch.save`` file) or "nvlabs" (a raw pickle), by content.

    Raises ConversionError for a missing, empty or unrecognised file."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file; expected a checkpoint (.pkl or .pt)")
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise ConversionError(f"{path}: found an empty file; expected a checkpoint")
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise ConversionError(
                f"{path}: found a broken or truncated zip archive ({_short(e)}); expected a "
                "torch.save checkpoint"
            ) from None
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "rosinality"
        raise ConversionError(
            f"{path}: found a zip archive without data.pkl; expected a torch.save checkpoint "
            "(rosinality .pt) or an NVlabs pickle"
        )
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "rosinality"  # torch.save's pre-1.6 format
    if head[0] == 0x80 and 2 <= head[1] <= 5:
        return "nvlabs"
    raise ConversionError(
        f"{path}: found neither a pickle nor a torch.save zip (starts with {head[:8]!r}); "
        "expected an NVlabs .pkl or a rosinality .pt"
    )


def load_checkpoint(path: str | os.PathLike, fmt: str = "auto") -> ImportedCheckpoint:
    """Import a user's StyleGAN2 checkpoint. ``fmt``: "auto" (by content), "nvlabs" or
    "rosinality". Every refusal is a one-line ``ConversionError`` naming the file."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    path = Path(path)
    found = detect_format(path)
    if fmt != "auto" and fmt != found:
        what = {
            "rosinality": "a torch.save checkpoint (zip), like a rosinality .pt",
            "nvlabs": "a raw pickle, like an NVlabs .pkl",
        }[found]
        want = {
            "rosinality": "a rosinality stylegan2-pytorch .pt (torch.save)",
            "nvlabs": "an NVlabs network pickle",
        }[fmt]
        raise ConversionError(
            f"{path}: found {what}; expected {want} (--from {fmt}); try --from auto"
        )
    return _nvlabs(path) if found == "nvlabs" else _rosinality(path)


def load_generator(fmt: str, path: str | os.PathLike) -> N.Generator:
    """The generator of ``load_checkpoint(path, fmt)``."""
    return load_checkpoint(path, fmt).generator
