"""The domain-guided encoder of a user's imported generator (``stylegate train encoder``).

IDInvert's encoder objective (docs/design.md, "Community checkpoints") where no training
set comes with the model: the generator's own samples are the data. Each iteration draws
z -> w -> W+ (half of them style-mixed) -> x = G(W+) and trains the encoder E on

- ``lat``: ||E(x) - W+||^2, the latent regression (W+ known, no backward through G);
- ``pix`` + ``feat``: ||G(E(x)) - x||^2 and the same through the perceptual feature network
  the repository serves for this model (the checkpoint's own discriminator blocks, VGG16
  weights, or SSIM structure), on the first ``recon`` samples: the encoder learns what the
  inversion step measures;
- with ``images``: the same image and perceptual terms on the user's own pictures (no W+ is
  known for them).

No adversarial term: the importer keeps the checkpoint's discriminator as weights and
rebuilds only its first blocks (the feature network), not its epilogue.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import networks as N
from stylegate.gan.train.common import psnr_db
from stylegate.gan.train.trainer import ConfigError, Help, Recipe, Schedule

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_IMAGES = 20000  # a folder is held in memory as uint8


@dataclasses.dataclass(kw_only=True)
class ImportedEncoderConfig:
    checkpoint: Annotated[Path, Help("the user's checkpoint: NVlabs .pkl or rosinality .pt")]
    format: Annotated[str, Help("checkpoint format", choices=("auto", "nvlabs", "rosinality"))] = (
        "auto"
    )
    features: Annotated[
        str | None,
        Help("perceptual features: discriminator | none | VGG16 file (default: as exported)"),
    ] = None
    images: Annotated[
        Path | None, Help("a folder of the user's own images (image + perceptual terms)")
    ] = None
    iters: int = 20000
    batch: Annotated[int, Help("generated samples per iteration (latent regression)")] = 8
    recon: Annotated[int, Help("of those, reconstructed through G (image + perceptual)")] = 4
    image_batch: Annotated[int, Help("user images per iteration (with --images)")] = 4
    seed: int = 0
    lr: Annotated[float, Help("encoder Adam, cosine decay to 5%")] = 5e-4
    w_latent: float = 1.0
    w_pix: float = 1.0
    w_feat: float = 0.5
    mixing: Annotated[float, Help("fraction of style-mixed samples")] = 0.5


def encoder_channels(resolution: int) -> dict[int, int]:
    """The shipped encoder's widths up to 64 px, 16 channels above (it runs inside every
    inversion step, so it stays narrow at high resolution)."""
    base = {4: 256, 8: 128, 16: 64, 32: 32, 64: 16}
    return {2**i: base.get(2**i, 16) for i in range(2, resolution.bit_length())}


def load_images(folder: Path, resolution: int) -> torch.Tensor:
    """Every image in ``folder``, centre-cropped square and resized: uint8 [N, 3, R, R]."""
    from PIL import Image, UnidentifiedImageError

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ConfigError(f"--images {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    if len(paths) > MAX_IMAGES:
        raise ConfigError(f"--images {folder}: {len(paths)} images; at most {MAX_IMAGES}")
    out = np.empty((len(paths), resolution, resolution, 3), np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except (OSError, UnidentifiedImageError) as e:
            raise ConfigError(f"--images: cannot read {path}: {e}") from None
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        out[i] = np.asarray(im.resize((resolution, resolution), Image.LANCZOS))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


class ImportedEncoder(Recipe):
    """Train a domain-guided encoder for an imported NVlabs/rosinality generator on its own
    samples (latent regression + reconstruction through the served feature network),
    optionally plus a folder of the user's images."""

    name = "imported_encoder"
    Config = ImportedEncoderConfig
    log_every = 10

    def __init__(self, cfg: ImportedEncoderConfig, *, device: torch.device):
        super().__init__(cfg, device=device)
        from stylegate.export import api, importers
        from stylegate.export.features import FeatureNetworkError

        if not 1 <= cfg.recon <= cfg.batch:
            raise ConfigError(f"--recon must be between 1 and --batch ({cfg.batch})")
        try:
            imported = importers.load_checkpoint(cfg.checkpoint, cfg.format)
            net = api.imported_feature_net(imported, cfg.features)
        except (importers.ConversionError, FeatureNetworkError) as e:
            raise ConfigError(str(e)) from None
        G = imported.generator.eval().requires_grad_(False)
        self.imported = imported
        self.features = net.requires_grad_(False).to(device)
        self.images = None if cfg.images is None else load_images(cfg.images, G.resolution)
        torch.manual_seed(cfg.seed)
        E = N.Encoder(
            num_ws=G.num_ws,
            w_dim=G.w_dim,
            resolution=G.resolution,
            channels=encoder_channels(G.resolution),
        )
        with torch.no_grad():  # a fresh encoder starts at the generator's average latent
            E.w_avg.copy_(G.mapping.w_avg)
        self.G, self.E = G.to(device), E.to(device)
        self.opt = torch.optim.Adam(E.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.resumable = {"E": E, "opt": self.opt}
        self.schedules = [Schedule(self.opt, cfg.lr, decay_to=0.05)]
        self.total = cfg.iters

    def extra_state(self) -> dict[str, Any]:
        return {"E_config": self.E.config}

    @torch.no_grad()
    def samples(self, gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(W+ [n, num_ws, w_dim], G's images of them [n, 3, R, R]): a ``mixing`` fraction
        style-mixed at a random layer. A conditional mapping takes random classes."""
        G, dev = self.G, self.device

        def mapped() -> torch.Tensor:
            z = torch.randn(n, G.z_dim, generator=gen).to(dev)
            c = None
            if G.c_dim:
                c = F.one_hot(torch.randint(0, G.c_dim, (n,), generator=gen), G.c_dim).to(dev)
            return G.mapping(z, c)  # [n, w_dim]

        w1, w2 = mapped(), mapped()
        cut = torch.randint(1, G.num_ws, (n,), generator=gen)
        mix = (torch.arange(G.num_ws)[None] >= cut[:, None]) & (
            torch.rand(n, 1, generator=gen) < self.cfg.mixing
        )
        ws = torch.where(mix.to(dev)[..., None], w2[:, None], w1[:, None])
        return ws, G.synthesis(ws, "const", fused=True)

    def user_batch(self, gen: torch.Generator) -> torch.Tensor:
        """This iteration's user images in [-1, 1], randomly mirrored."""
        idx = torch.randint(0, len(self.images), (self.cfg.image_batch,), generator=gen)
        x = self.images[idx].to(self.device, torch.float32) / 127.5 - 1
        flip = torch.rand(len(idx), generator=gen) < 0.5
        return torch.where(flip.to(self.device)[:, None, None, None], x.flip(3), x)

    def reconstruction(self, x: torch.Tensor, ws: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(pixel MSE, feature MSE) of G(ws) against x."""
        rec = self.G.synthesis(ws, "const")  # non-fused: the faster backward pass on CPU
        with torch.no_grad():
            target = self.features.features(x)
        return F.mse_loss(rec, x), F.mse_loss(self.features.features(rec), target)

    def step(self, it: int, gen: torch.Generator) -> dict[str, float]:
        cfg = self.cfg
        w, x = self.samples(gen, cfg.batch)
        ws = self.E(x)
        loss_lat = F.mse_loss(ws, w)
        loss_pix, loss_feat = self.reconstruction(x[: cfg.recon], ws[: cfg.recon])
        loss = cfg.w_latent * loss_lat + cfg.w_pix * loss_pix + cfg.w_feat * loss_feat
        out = {"lat": loss_lat.item(), "pix": loss_pix.item(), "psnr": psnr_db(loss_pix.item())}
        if self.images is not None:
            real = self.user_batch(gen)
            real_pix, real_feat = self.reconstruction(real, self.E(real))
            loss = loss + cfg.w_pix * real_pix + cfg.w_feat * real_feat
            out["psnr_user"] = psnr_db(real_pix.item())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return out

    def preview(self) -> torch.Tensor:
        """Four fixed samples over their reconstructions."""
        _, x = self.samples(torch.Generator().manual_seed(0), 4)
        return torch.cat([x, self.G.synthesis(self.E(x), "const", fused=True)])

    def encoder(self) -> N.Encoder:
        """The encoder being trained, as an eval copy on the CPU."""
        E = N.Encoder(**self.E.config)
        E.load_state_dict(self.E.state_dict())
        return E.eval().requires_grad_(False)

    @staticmethod
    def pack(state: dict[str, Any], shipped: dict[str, Any]) -> dict[str, Any]:
        """The encoder (fp16)."""
        E = ckpt.encoder_from({"config": state["E_config"], "state_dict": state["E"]})
        shipped["encoder"] = ckpt.pack_module(E)
        return shipped
