"""NVlabs network pickles as their training loops write them, and NVlabs' fp32 forward.

``write_snapshot`` writes what ``training_loop.py`` of stylegan2-ada-pytorch (or of the
stylegan3 repository with ``--cfg=stylegan2``) pickles every few ticks: a dict of
``training_set_kwargs`` (a plain dict), ``G``, ``D``, ``G_ema`` (deep copies, eval, no grad)
and ``augment_pipe``. The networks are instances of the classes in ``nvlabs_networks_src``
imported as ``training.networks`` / ``training.networks_stylegan2``; they pickle through a
stand-in ``torch_utils.persistence`` whose ``__reduce__`` gives the same record as NVlabs'
(``_reconstruct_persistent_obj`` with ``meta = {type, version, module_src, class_name,
state}``, state = the module's ``__dict__``), and their kwargs hold instances of a stand-in
``dnnlib.util.EasyDict`` (a dict subclass, pickled with NEWOBJ + SETITEMS). So the pickle
has NVlabs' class paths and opcodes; only the module source text is ours.

``reference_mapping`` / ``reference_synthesis`` are NVlabs' fp32 inference path written
from its math on the G_ema state dict (fused modulated convs with per-sample weights,
``upfirdn2d`` by explicit zero insertion, ``bias_act`` with gain and clamp), independent of
``stylegate.gan.networks``: what the importer's output is compared with.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import inspect
import math
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

PERSISTENCE_VERSION = 6  # torch_utils/persistence.py's _version in both NVlabs repositories
NETWORKS_MODULE = {"stylegan2-ada": "training.networks", "stylegan3": "training.networks_stylegan2"}
SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------- stand-in modules


class EasyDict(dict):
    """``dnnlib.util.EasyDict``'s shape: a dict subclass with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]


EasyDict.__module__ = "dnnlib.util"

_source_modules: dict[str, types.ModuleType] = {}  # module_src -> module (deepcopy rebuilds)
_module_sources: dict[str, str] = {}  # module name -> its source, read once


def _reconstruct_persistent_obj(meta):
    """Rebuilds a persistent object from its record (``copy.deepcopy`` goes through here)."""
    module = _source_modules[meta["module_src"]]
    cls = getattr(module, meta["class_name"])
    obj = cls.__new__(cls)
    obj.__setstate__(dict(meta["state"]))
    return obj


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


def persistent_class(cls):
    """The persistence wrapper: records the constructor arguments and pickles the object as
    ``_reconstruct_persistent_obj(meta)`` with the defining module's whole source."""
    module = sys.modules[cls.__module__]
    source = _module_sources.get(module.__name__)
    if source is None:  # one string object per module: pickle writes it once, then memo refs
        source = _module_sources[module.__name__] = inspect.getsource(module)
    _source_modules[source] = module

    class Persistent(cls):
        _orig_module_src = source
        _orig_class_name = cls.__name__

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)

        def __reduce__(self):
            reduced = list(super().__reduce__()) + [None, None]
            meta = {
                "type": "class",
                "version": PERSISTENCE_VERSION,
                "module_src": self._orig_module_src,
                "class_name": self._orig_class_name,
                "state": reduced[2],  # object.__reduce__'s state: the module's __dict__
            }
            return (_reconstruct_persistent_obj, (meta,), None)

    Persistent.__name__ = Persistent.__qualname__ = cls.__name__
    return Persistent


@contextlib.contextmanager
def nvlabs_modules(repo: str = "stylegan2-ada"):
    """Install stand-in ``dnnlib``, ``dnnlib.util``, ``torch_utils``,
    ``torch_utils.persistence``, ``training``, ``training.augment`` and the networks module
    in ``sys.modules`` (restored afterwards). Yields (networks module, augment module)."""
    names = [
        "dnnlib",
        "dnnlib.util",
        "torch_utils",
        "torch_utils.persistence",
        "training",
        "training.augment",
        *NETWORKS_MODULE.values(),
    ]
    saved = {n: sys.modules.get(n) for n in names}
    _module_sources.clear()
    dnnlib, util = types.ModuleType("dnnlib"), types.ModuleType("dnnlib.util")
    util.EasyDict = dnnlib.EasyDict = EasyDict
    dnnlib.util = util
    torch_utils, persistence = (
        types.ModuleType("torch_utils"),
        types.ModuleType("torch_utils.persistence"),
    )
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    persistence.persistent_class = persistent_class
    torch_utils.persistence = persistence
    training = types.ModuleType("training")
    training.__path__ = []
    sys.modules.update(
        {
            "dnnlib": dnnlib,
            "dnnlib.util": util,
            "torch_utils": torch_utils,
            "torch_utils.persistence": persistence,
            "training": training,
        }
    )
    try:
        src = Path(__file__).with_name("nvlabs_networks_src.py")
        loaded = []
        for name in (NETWORKS_MODULE[repo], "training.augment"):
            spec = importlib.util.spec_from_file_location(name, src)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            setattr(training, name.split(".")[1], module)
            loaded.append(module)
        yield tuple(loaded)
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


# --------------------------------------------------------------------------- snapshots


@dataclasses.dataclass
class Snapshot:
    path: Path
    state: dict[str, torch.Tensor]  # G_ema's state dict (NVlabs keys), for the reference
    d_state: dict[str, torch.Tensor]  # D's
    conv_clamp: float | None
    c_dim: int
    z_dim: int
    num_ws: int


def _randomize(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Values a trained network could have: non-zero biases, noise strengths, w_avg (so
    every term of the forward shows up in a parity check)."""
    with torch.no_grad():
        for name, t in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "bias":
                t.add_(torch.randn(t.shape, generator=gen) * 0.2)
            elif leaf == "noise_strength":
                t.copy_(torch.randn(t.shape, generator=gen) * 0.3)
        for name, t in module.named_buffers():
            if name.endswith("w_avg"):
                t.copy_(torch.randn(t.shape, generator=gen))


def write_snapshot(
    path: str | Path,
    *,
    repo: str = "stylegan2-ada",  # "stylegan2-ada" | "stylegan3" (--cfg=stylegan2)
    resolution: int = 32,
    z_dim: int = 32,
    w_dim: int = 32,
    c_dim: int = 0,
    mapping_layers: int = 8,
    channel_base: int = 512,  # NVlabs' defaults are 32768 / 512: same structure, wider
    channel_max: int = 32,
    num_fp16_res: int = 4,
    conv_clamp: float | None = 256,
    augment: bool = True,
    seed: int = 0,
    g_ema_state: dict[str, torch.Tensor] | None = None,  # G_ema's weights; None: random
    d_state: dict[str, torch.Tensor] | None = None,  # some of D's weights; None: random
) -> Snapshot:
    """Write ``network-snapshot-*.pkl`` as the NVlabs training loop does. With
    ``g_ema_state`` (every tensor of the generator, NVlabs keys) the snapshot carries a
    known generator; ``d_state`` replaces the discriminator tensors it names."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    common = {"c_dim": c_dim, "img_resolution": resolution, "img_channels": 3}
    synthesis = {
        "channel_base": channel_base,
        "channel_max": channel_max,
        "num_fp16_res": num_fp16_res,
        "conv_clamp": conv_clamp,
    }
    with nvlabs_modules(repo) as (networks, augment_module):
        if repo == "stylegan2-ada":  # train.py: G_kwargs with nested EasyDicts
            g_kwargs = EasyDict(
                z_dim=z_dim,
                w_dim=w_dim,
                mapping_kwargs=EasyDict(num_layers=mapping_layers),
                synthesis_kwargs=EasyDict(synthesis),
            )
        else:  # the stylegan3 repository's train.py, --cfg=stylegan2: flat synthesis kwargs
            g_kwargs = EasyDict(
                z_dim=z_dim,
                w_dim=w_dim,
                mapping_kwargs=EasyDict(num_layers=mapping_layers),
                channel_base=channel_base,
                channel_max=channel_max,
                fused_modconv_default="inference_only",
                num_fp16_res=num_fp16_res,
                conv_clamp=conv_clamp,
            )
        d_kwargs = EasyDict(
            block_kwargs=EasyDict(),
            mapping_kwargs=EasyDict(),
            epilogue_kwargs=EasyDict(mbstd_group_size=4),
            channel_base=channel_base,
            channel_max=channel_max,
            num_fp16_res=num_fp16_res,
            conv_clamp=conv_clamp,
        )
        G = networks.Generator(**g_kwargs, **common).train().requires_grad_(False)
        D = networks.Discriminator(**d_kwargs, **common).train().requires_grad_(False)
        _randomize(G, gen)
        _randomize(D, gen)
        if g_ema_state is not None:
            G.load_state_dict(g_ema_state)  # strict: every tensor, the same shapes
        if d_state is not None:
            unknown = set(d_state) - set(D.state_dict())
            if unknown:
                raise KeyError(f"not tensors of the NVlabs discriminator: {sorted(unknown)[:4]}")
            D.load_state_dict(d_state, strict=False)
        G_ema = copy.deepcopy(G).eval()
        with torch.no_grad():  # the EMA has drifted from G
            for p in G.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        pipe = None
        if augment:
            pipe = augment_module.AugmentPipe(
                xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1
            )
            pipe.p.fill_(0.12)
        training_set_kwargs = EasyDict(
            class_name="training.dataset.ImageFolderDataset",
            path=f"~/datasets/faces-{resolution}x{resolution}.zip",
            use_labels=c_dim > 0,
            max_size=1000,
            xflip=False,
            resolution=resolution,
            random_seed=0,
        )
        modules = {"G": G, "D": D, "G_ema": G_ema, "augment_pipe": pipe}
        if repo == "stylegan2-ada":
            data = {"training_set_kwargs": dict(training_set_kwargs)}
            data.update(modules)
        else:
            data = {**modules, "training_set_kwargs": dict(training_set_kwargs)}
        for key, value in data.items():  # both loops: deep copies, eval, no grad, on the CPU
            if isinstance(value, torch.nn.Module):
                data[key] = copy.deepcopy(value).eval().requires_grad_(False).cpu()
        path = Path(path)
        with open(path, "wb") as f:
            pickle.dump(data, f)
        state = {k: v.detach().clone() for k, v in G_ema.state_dict().items()}
        d_state = {k: v.detach().clone() for k, v in D.state_dict().items()}
        num_ws = G.num_ws
    return Snapshot(path, state, d_state, conv_clamp, c_dim, z_dim, num_ws)


def write_stylegan3_snapshot(path: str | Path, *, seed: int = 0) -> Path:
    """A StyleGAN3 (config -t) generator's record: ``SynthesisInput`` and ``L*`` layers with
    ``magnitude_ema`` (structure only; the importer refuses it)."""
    src = """
import numpy as np
import torch
from torch_utils import persistence


@persistence.persistent_class
class SynthesisInput(torch.nn.Module):
    def __init__(self, w_dim, channels, size, sampling_rate, bandwidth):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, np.broadcast_to(size, [2])
        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", torch.randn([channels, 2]))
        self.register_buffer("phases", torch.rand([channels]) - 0.5)


@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    def __init__(self, w_dim, in_channels, out_channels, is_torgb=False):
        super().__init__()
        self.is_torgb = is_torgb
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", torch.ones([12]) / 12)


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    def __init__(self, w_dim, img_resolution, img_channels):
        super().__init__()
        self.input = SynthesisInput(w_dim, 8, 36, 16, 2)
        self.L0_36_8 = SynthesisLayer(w_dim, 8, 8)
        self.L1_36_3 = SynthesisLayer(w_dim, 8, img_channels, is_torgb=True)


@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, **kw):
        super().__init__()
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels)
"""
    path = Path(path)
    src_file = path.with_suffix(".networks_stylegan3.py")
    src_file.write_text(src)
    with nvlabs_modules("stylegan3"):
        spec = importlib.util.spec_from_file_location("training.networks_stylegan3", src_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules["training.networks_stylegan3"] = module
        try:
            spec.loader.exec_module(module)
            torch.manual_seed(seed)
            G = module.Generator(
                z_dim=8,
                c_dim=0,
                w_dim=8,
                img_resolution=16,
                img_channels=3,
                mapping_kwargs=EasyDict(num_layers=2),
                magnitude_ema_beta=0.999,
            )
            data = {"G": G, "D": None, "G_ema": G, "augment_pipe": None, "training_set_kwargs": {}}
            with open(path, "wb") as f:
                pickle.dump(data, f)
        finally:
            sys.modules.pop("training.networks_stylegan3", None)
    return path


def write_malicious_persistent(path: str | Path, marker: str | Path) -> Path:
    """A persistence record whose module_src would create ``marker`` if executed (the real
    reconstructor ``exec``s it)."""
    record = {
        "type": "class",
        "version": PERSISTENCE_VERSION,
        "module_src": f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n",
        "class_name": "Generator",
        "state": {"_parameters": {}, "_buffers": {}, "_modules": {}},
    }

    class Record:
        def __reduce__(self):
            return (_reconstruct_persistent_obj, (record,))

    with nvlabs_modules(), open(path, "wb") as f:
        pickle.dump({"G_ema": Record()}, f)
    return Path(path)


def write_tensorflow_pickle(path: str | Path) -> Path:
    """A TensorFlow-era snapshot: a (G, D, Gs) tuple of ``dnnlib.tflib.network.Network``
    objects, each pickled by class + ``__getstate__`` dict (NEWOBJ + BUILD)."""
    names = ["dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"]
    saved = {n: sys.modules.get(n) for n in names}

    class Network:
        def __init__(self, name):
            self.name = name

        def __getstate__(self):
            return {
                "version": 4,
                "name": self.name,
                "static_kwargs": {"resolution": 16},
                "components": {},
                "build_module_src": "def G_main(*args, **kwargs): ...\n",
                "build_func_name": "G_main",
                "variables": [("dlatent_avg", np.zeros(8, np.float32))],
            }

    Network.__module__ = "dnnlib.tflib.network"
    Network.__qualname__ = "Network"
    try:
        for n in names:
            sys.modules[n] = types.ModuleType(n)
        sys.modules["dnnlib.tflib.network"].Network = Network
        with open(path, "wb") as f:
            pickle.dump((Network("G"), Network("D"), Network("Gs")), f, protocol=3)
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
    return Path(path)


# --------------------------------------------------------------------------- NVlabs' fp32 forward


def _fir(sd: dict, key: str) -> torch.Tensor:
    return sd[key] if key in sd else torch.outer(*[torch.tensor([1.0, 3, 3, 1]) / 8] * 2)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, *, up: int = 1, pad=(0, 0), gain: float = 1.0):
    """Zero insertion by strided assignment, zero padding, true convolution with ``f * gain``."""
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    k = (torch.flip(f, [0, 1]) * gain)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, k, groups=c)


def _fc(sd: dict, prefix: str, x: torch.Tensor, *, lr: float = 1.0, act: bool = False):
    w = sd[f"{prefix}.weight"]
    x = x @ (w * (lr / math.sqrt(w.shape[1]))).t() + sd[f"{prefix}.bias"] * lr
    return F.leaky_relu(x, 0.2) * SQRT2 if act else x


def _norm2(x: torch.Tensor) -> torch.Tensor:
    return x / (x.square().mean(dim=1, keepdim=True) + 1e-8).sqrt()


def reference_mapping(sd: dict, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    """NVlabs MappingNetwork.forward (no truncation): [N, z_dim] (+ [N, c_dim]) -> [N, w_dim]."""
    x = _norm2(z)
    if "mapping.embed.weight" in sd:
        x = torch.cat([x, _norm2(_fc(sd, "mapping.embed", c))], dim=1)
    i = 0
    while f"mapping.fc{i}.weight" in sd:
        x = _fc(sd, f"mapping.fc{i}", x, lr=0.01, act=True)
        i += 1
    return x


def _modconv(x, weight, styles, *, demodulate: bool, up: bool, f: torch.Tensor):
    """Fused modulated conv (per-sample weights, groups = batch), NVlabs' fp32 inference path."""
    n, cin, h, w = x.shape
    cout, _, k, _ = weight.shape
    ww = weight[None] * styles[:, None, :, None, None]  # [N, out, in, k, k]
    if demodulate:
        ww = ww * (ww.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    x = x.reshape(1, n * cin, h, w)
    if up:  # transposed conv, stride 2, then the FIR with padding (1, 1) and gain 4
        ww = ww.transpose(1, 2).reshape(n * cin, cout, k, k)
        x = F.conv_transpose2d(x, ww, stride=2, groups=n)
        x = upfirdn2d(x, f, pad=(1, 1), gain=4)
    else:
        x = F.conv2d(x, ww.reshape(n * cout, cin, k, k), padding=k // 2, groups=n)
    return x.reshape(n, cout, *x.shape[2:])


def reference_synthesis(
    sd: dict, ws: torch.Tensor, *, conv_clamp: float | None = None
) -> torch.Tensor:
    """NVlabs SynthesisNetwork.forward in fp32 (``force_fp32=True``, noise_mode='const',
    fused modconv as in eval), 'skip' architecture: ws [N, num_ws, w_dim] -> [N, 3, R, R]."""
    res = sorted(
        int(k.split(".")[1][1:]) for k in sd if k.startswith("synthesis.b") and "conv1.weight" in k
    )

    def clamp(x):
        return x if conv_clamp is None else x.clamp(-conv_clamp, conv_clamp)

    def layer(p, x, w, up):
        styles = _fc(sd, f"{p}.affine", w)
        x = _modconv(
            x, sd[f"{p}.weight"], styles, demodulate=True, up=up, f=_fir(sd, p + ".resample_filter")
        )
        x = x + sd[f"{p}.noise_const"] * sd[f"{p}.noise_strength"]
        return clamp(F.leaky_relu(x + sd[f"{p}.bias"][None, :, None, None], 0.2) * SQRT2)

    def torgb(p, x, w):
        weight = sd[f"{p}.weight"]
        styles = _fc(sd, f"{p}.affine", w) / math.sqrt(weight.shape[1] * weight.shape[2] ** 2)
        x = _modconv(x, weight, styles, demodulate=False, up=False, f=None)
        return clamp(x + sd[f"{p}.bias"][None, :, None, None])

    x = img = None
    i = 0
    for r in res:
        b = f"synthesis.b{r}"
        if r == 4:
            x = sd[f"{b}.const"][None].repeat(ws.shape[0], 1, 1, 1)
            x = layer(f"{b}.conv1", x, ws[:, i], False)
            y = torgb(f"{b}.torgb", x, ws[:, i + 1])
            i += 1
        else:
            x = layer(f"{b}.conv0", x, ws[:, i], True)
            x = layer(f"{b}.conv1", x, ws[:, i + 1], False)
            y = torgb(f"{b}.torgb", x, ws[:, i + 2])
            i += 2
        if img is not None:
            img = upfirdn2d(img, _fir(sd, b + ".resample_filter"), up=2, pad=(2, 1), gain=4)
        img = y if img is None else img + y
    return img


def parity_report(directory: str | Path) -> list[str]:
    """Max abs difference of imported generators from the reference forwards, per format and
    resolution (fp32; batch 2; random trained-looking weights, images of magnitude ~10)."""
    from stylegate.export import importers
    from tests.support import rosinality_ckpt as RC
    from tests.test_export_importers import rosinality_forward

    directory = Path(directory)
    lines = []
    torch.manual_seed(0)
    for res in (32, 64, 256, 1024):
        small = res > 64
        snap = write_snapshot(
            directory / f"nvlabs-{res}.pkl",
            resolution=res,
            mapping_layers=8,
            channel_base=1024 if small else 512,
            channel_max=8 if res == 1024 else (16 if small else 32),
        )
        G = importers.load_checkpoint(snap.path).generator
        ws = torch.randn(2, G.num_ws, G.w_dim)
        with torch.no_grad():
            d = (G.synthesis(ws) - reference_synthesis(snap.state, ws, conv_clamp=256)).abs().max()
        lines.append(f"nvlabs      {res:5d}px  max abs diff {d.item():.2e}")
    for res in (32, 64, 256):
        ch = {r: 16 if r <= 32 else 8 for r in (2**i for i in range(2, res.bit_length()))}
        ck = RC.write_checkpoint(directory / f"ros-{res}.pt", size=res, channels=ch, style_dim=16)
        G = importers.load_checkpoint(ck.path).generator
        ws = torch.randn(2, G.num_ws, G.w_dim)
        with torch.no_grad():
            d = (G.synthesis(ws) - rosinality_forward(ck.g_ema, ws)).abs().max()
        lines.append(f"rosinality  {res:5d}px  max abs diff {d.item():.2e}")
    return lines


if __name__ == "__main__":  # python -m tests.support.nvlabs_pickle
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print("\n".join(parity_report(tmp)))
