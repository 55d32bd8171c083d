"""Training CLIs: the GAN, the transfer (woodblock) fine-tune, the attribute classifier and
the domain-guided encoder.

Every loop is resumable: it keeps its whole state (modules, optimizers, iteration) in
``RUN_DIR/state.pt``, saved atomically every ``--save-every`` seconds and at the end, and
draws each iteration's batch and noise from seeds derived from (seed, iteration), so a run
interrupted and resumed gives the same weights as an uninterrupted one.

    python -m stylegate.gan.train classifier --run runs/classifier --iters 1500
    python -m stylegate.gan.train gan --run runs/gan --kimg 150
    python -m stylegate.gan.train transfer --base checkpoints/base.pt --run runs/transfer --kimg 20
    python -m stylegate.gan.train encoder --base checkpoints/base.pt --classifier checkpoints/classifier.pt --run runs/encoder
    python -m stylegate.gan.train ship --run runs/gan --what gan --out checkpoints/base.pt
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data
from stylegate.gan import networks as N


def _batch(seed: int, it: int, n: int, style: str = "photo", size: int = 64):
    rng = np.random.default_rng([seed, it])
    seeds = rng.integers(0, data.HELDOUT_SEED_BASE, size=n)
    images, labels, yaw = data.render_batch(seeds, style=style, size=size)
    return (
        torch.from_numpy(data.to_tensor_range(images)),
        torch.from_numpy(labels),
        torch.from_numpy(yaw),
    )


def _seed_all(seed: int, it: int) -> torch.Generator:
    torch.manual_seed(seed * 1_000_003 + it)
    return torch.Generator().manual_seed(seed * 1_000_003 + it)


class _Clock:
    """Decides when to save: every `every` seconds, and when the time budget runs out."""

    def __init__(self, every: float, minutes: float | None):
        self.every = every
        self.last = time.monotonic()
        self.deadline = None if minutes is None else time.monotonic() + minutes * 60

    def save_due(self) -> bool:
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            return True
        return False

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def tick(self, save) -> bool:
        """Once per iteration: call ``save`` when one is due; True when the time is up (the
        loop then breaks and saves one last time)."""
        if self.save_due():
            save()
        return self.out_of_time()


@torch.no_grad()
def ema_update(G_ema: torch.nn.Module, G: torch.nn.Module, beta: float) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G for parameters; buffers (w_avg, noise) copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.lerp_(p, 1 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def _psnr_db(mse: float) -> float:
    """PSNR of a pixel MSE on images in [-1, 1] (peak-to-peak 2)."""
    return 10 * math.log10(4.0 / max(mse, 1e-10))


def _save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    from PIL import Image

    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    n, h, w, c = x.shape
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * h, nrow * w, c), np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = x[i]
    Image.fromarray(grid).save(path)


# --------------------------------------------------------------------------- GAN

# The discriminator mirrors the generator's widths: a first run with 32 channels at 64px
# let D win from the first thousands of images and G collapsed to one face.
D_CHANNELS = {4: 128, 8: 128, 16: 64, 32: 32, 64: 16}


def r1_penalty(D: torch.nn.Module, real: torch.Tensor) -> torch.Tensor:
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()


@dataclasses.dataclass
class JointEncoder:
    """Trains the encoder with the GAN: real renders are encoded and reconstructed (pixel +
    perceptual loss into both E and G) and G's own samples are encoded back to their W+.
    On 2 CPU cores this dense signal teaches G the data far sooner than the adversarial
    loss alone, and leaves an encoder matched to G (fine-tuned afterwards with the IDInvert
    objective by ``train_encoder``)."""

    E: torch.nn.Module
    opt: torch.optim.Optimizer
    C: torch.nn.Module  # frozen classifier: its features are the perceptual loss
    weight: float = 1.0  # of the whole reconstruction objective against the GAN loss
    w_feat: float = 0.5
    n_real: int = 16


def gan_iteration(
    G,
    D,
    G_ema,
    opt_g,
    opt_d,
    real,
    *,
    gen,
    it,
    r1_gamma,
    r1_every,
    mixing_prob,
    ema_beta,
    joint: JointEncoder | None = None,
):
    """One G step and one D step (non-saturating loss, lazy R1, style mixing, EMA)."""
    b = real.shape[0]
    z = torch.randn(b, G.z_dim, generator=gen)
    w = G.mapping(z, update_w_avg=True)
    ws = w[:, None].expand(-1, G.num_ws, -1)
    if torch.rand((), generator=gen).item() < mixing_prob:
        cut = int(torch.randint(1, G.num_ws, (), generator=gen))
        w2 = G.mapping(torch.randn(b, G.z_dim, generator=gen))
        ws = torch.cat([ws[:, :cut], w2[:, None].expand(-1, G.num_ws - cut, -1)], dim=1)
    fake = G.synthesis(ws, "random")

    D.requires_grad_(False)
    loss_g = F.softplus(-D(fake)).mean()
    loss_total = loss_g
    if joint is not None:
        x = real[: joint.n_real]
        rec = G.synthesis(joint.E(x), "const")
        loss_rec = F.mse_loss(rec, x) + joint.w_feat * F.mse_loss(
            joint.C.features(rec), joint.C.features(x)
        )
        loss_lat = F.mse_loss(joint.E(fake.detach()), ws.detach())
        loss_total = loss_g + joint.weight * (loss_rec + loss_lat)
        joint.opt.zero_grad(set_to_none=True)
    opt_g.zero_grad(set_to_none=True)
    loss_total.backward()
    opt_g.step()
    if joint is not None:
        joint.opt.step()
    D.requires_grad_(True)

    loss_d = F.softplus(D(fake.detach())).mean() + F.softplus(-D(real)).mean()
    if it % r1_every == 0:
        loss_d = loss_d + r1_penalty(D, real) * (r1_gamma / 2) * r1_every
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()

    ema_update(G_ema, G, ema_beta)
    return loss_g.item(), loss_d.item()


def train_gan(
    run: Path,
    *,
    kimg: float,
    batch: int = 32,
    seed: int = 0,
    style: str = "photo",
    init: Path | None = None,  # start from this checkpoint's G/D (transfer fine-tune)
    resolution: int = 64,  # image size of a new model (tests train tiny ones)
    lr: float = 2.5e-3,
    r1_gamma: float = 0.5,
    r1_every: int = 16,
    mixing_prob: float = 0.9,
    ema_kimg: float = 5.0,
    minutes: float | None = None,
    save_every: float = 120.0,
    threads: int | None = None,
    joint_classifier: Path | None = None,  # train the encoder jointly (see JointEncoder)
) -> dict:
    if threads:
        torch.set_num_threads(threads)
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / "state.pt"
    if init is not None:
        src = ckpt.load(init)
        G = ckpt.generator_from(src["G_ema"]).train().requires_grad_(True)
        D = ckpt.discriminator_from(src["D"])
    else:
        torch.manual_seed(seed)
        G = N.Generator(resolution=resolution)
        D = N.Discriminator(resolution=resolution, channels=D_CHANNELS)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    c = r1_every / (r1_every + 1)  # lazy-regularization correction of Adam's settings
    mapping_params = list(G.mapping.parameters())
    other = [p for n, p in G.named_parameters() if not n.startswith("mapping.")]
    opt_g = torch.optim.Adam(
        [{"params": other}, {"params": mapping_params}], lr=lr, betas=(0.0, 0.99), eps=1e-8
    )
    opt_d = torch.optim.Adam(D.parameters(), lr=lr * c, betas=(0.0, 0.99**c), eps=1e-8)
    joint = None
    if joint_classifier is not None:
        E = N.Encoder(num_ws=G.num_ws, w_dim=G.w_dim, resolution=G.resolution)
        joint = JointEncoder(
            E=E,
            opt=torch.optim.Adam(E.parameters(), lr=lr, betas=(0.9, 0.99)),
            C=ckpt.load_classifier(joint_classifier),
        )
    it, log = 0, []
    if state_path.exists():
        s = torch.load(state_path, weights_only=True)
        G.load_state_dict(s["G"]), D.load_state_dict(s["D"]), G_ema.load_state_dict(s["G_ema"])
        opt_g.load_state_dict(s["opt_g"]), opt_d.load_state_dict(s["opt_d"])
        for group in (*opt_g.param_groups, *opt_d.param_groups):  # a resumed run may change lr
            group["lr"] = lr if group in opt_g.param_groups else lr * c
        if joint is not None and "E" in s:
            joint.E.load_state_dict(s["E"]), joint.opt.load_state_dict(s["opt_e"])
        it, log = s["it"], s["log"]
        click.echo(f"resumed {run} at iteration {it} ({it * batch / 1000:.1f} kimg)")
    if joint is not None and "E" not in (s if state_path.exists() else {}):
        joint.E.w_avg.copy_(G.mapping.w_avg)

    def save():
        extra = {}
        if joint is not None:
            recenter_encoder(joint.E, G_ema.mapping.w_avg)
            extra = {
                "E": joint.E.state_dict(),
                "opt_e": joint.opt.state_dict(),
                "E_config": joint.E.config,
            }
        ckpt.atomic_save(
            dict(
                G=G.state_dict(),
                D=D.state_dict(),
                G_ema=G_ema.state_dict(),
                opt_g=opt_g.state_dict(),
                opt_d=opt_d.state_dict(),
                it=it,
                log=log,
                G_config=G.config,
                D_config=D.config,
                style=style,
                **extra,
            ),
            state_path,
        )
        with torch.no_grad():
            _save_grid(
                G_ema(torch.randn(32, G.z_dim, generator=torch.Generator().manual_seed(123))),
                run / "progress.png",
            )

    total = math.ceil(kimg * 1000 / batch)
    ema_beta = 0.5 ** (batch / (ema_kimg * 1000))
    clock = _Clock(save_every, minutes)
    t0 = time.monotonic()
    bar = tqdm(total=total, initial=it, desc=f"gan {style}", unit="it", mininterval=5)
    while it < total:
        real, _, _ = _batch(seed, it, batch, style, G.resolution)
        gen = _seed_all(seed, it)
        lg, ld = gan_iteration(
            G,
            D,
            G_ema,
            opt_g,
            opt_d,
            real,
            gen=gen,
            it=it,
            r1_gamma=r1_gamma,
            r1_every=r1_every,
            mixing_prob=mixing_prob,
            ema_beta=ema_beta,
            joint=joint,
        )
        it += 1
        bar.update(1)
        if it % 50 == 0:
            log.append((it, lg, ld))
            bar.set_postfix(loss_g=f"{lg:.3f}", loss_d=f"{ld:.3f}")
        if clock.tick(save):
            break
    bar.close()
    save()
    return {"iterations": it, "kimg": it * batch / 1000, "seconds": time.monotonic() - t0}


# --------------------------------------------------------------------------- autoencoder pretraining


def recenter_encoder(E: torch.nn.Module, w_avg: torch.Tensor) -> None:
    """Give the encoder a new ``w_avg`` centre without changing what it outputs (the offset
    head's bias absorbs the difference)."""
    with torch.no_grad():
        shift = (E.w_avg - w_avg).repeat(E.num_ws) / E.out.bias_gain
        E.out.bias.add_(shift)
        E.w_avg.copy_(w_avg)


def collapse_encoder_to_w(E: torch.nn.Module) -> None:
    """Make the encoder output the mean of its W+ codes at every layer (a W code): the
    autoencoder trains only that mean, so the per-layer offsets are meaningless."""
    with torch.no_grad():
        weight = E.out.weight.reshape(E.num_ws, E.w_dim, -1).mean(0)
        E.out.weight.copy_(weight.repeat(E.num_ws, 1))
        E.out.bias.copy_(E.out.bias.reshape(E.num_ws, E.w_dim).mean(0).repeat(E.num_ws))


class LatentDiscriminator(torch.nn.Module):
    """Tells encoded W codes of real renders from the mapping network's output."""

    def __init__(self, w_dim: int, hidden: int = 256):
        super().__init__()
        self.net = torch.nn.Sequential(
            N.FullyConnected(w_dim, hidden, activation=True),
            N.FullyConnected(hidden, hidden, activation=True),
            N.FullyConnected(hidden, 1),
        )

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.net(w)


def train_autoencoder(
    run: Path,
    *,
    classifier: Path,
    kimg: float,
    batch: int = 32,
    seed: int = 4,
    resolution: int = 64,
    lr: float = 2e-3,
    w_feat: float = 0.5,
    w_attr: float = 0.05,  # linear attribute probe on W: keeps labelled factors linear
    latent_steps: int = 4,  # mapping/latent-D steps per iteration (cheap: 128-d MLPs)
    latent_batch: int = 128,
    buffer_size: int = 4096,
    ema_kimg: float = 2.0,
    minutes: float | None = None,
    save_every: float = 120.0,
    threads: int | None = None,
) -> dict:
    """Pretrain synthesis network and encoder as an autoencoder through W, and the mapping
    network as a latent GAN on the encoded codes.

    Real renders go E -> w (the mean of E's W+ output) -> G.synthesis -> reconstruction, with
    a pixel and perceptual loss. A linear probe reads the renderer's labels from w. The
    mapping network learns to produce the distribution of encoded codes against a small
    latent discriminator, fed from a ring buffer of recent codes. On 2 CPU cores this
    dense, stable signal reaches far better samples per image shown than the adversarial
    loss alone; ``gan --init`` can then fine-tune the result adversarially."""
    if threads:
        torch.set_num_threads(threads)
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / "state.pt"
    torch.manual_seed(seed)
    G = N.Generator(resolution=resolution)
    D = N.Discriminator(resolution=resolution, channels=D_CHANNELS)  # untrained: for `gan --init`
    E = N.Encoder(num_ws=G.num_ws, w_dim=G.w_dim, resolution=resolution)
    LD = LatentDiscriminator(G.w_dim)
    probe = torch.nn.Linear(G.w_dim, len(data.ATTRIBUTES) + len(data.REGRESSIONS))
    C = ckpt.load_classifier(classifier)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    ae_params = [p for n, p in G.named_parameters() if not n.startswith("mapping.")]
    opt_ae = torch.optim.Adam(
        [*ae_params, *E.parameters(), *probe.parameters()], lr=lr, betas=(0.9, 0.99)
    )
    # the mapping layers have lr_mul 0.01: this gives them an effective step of about 1e-3
    opt_map = torch.optim.Adam(G.mapping.parameters(), lr=0.1, betas=(0.5, 0.99))
    opt_ld = torch.optim.Adam(LD.parameters(), lr=1e-3, betas=(0.5, 0.99))
    buffer = torch.zeros(buffer_size, G.w_dim)
    filled, it, log = 0, 0, []
    if state_path.exists():
        s = torch.load(state_path, weights_only=True)
        s.setdefault("E_train", s["E"])  # states written before the shipped form was split off
        for m, k in (
            (G, "G"),
            (G_ema, "G_ema"),
            (E, "E_train"),
            (LD, "LD"),
            (probe, "probe"),
            (opt_ae, "opt_ae"),
            (opt_map, "opt_map"),
            (opt_ld, "opt_ld"),
        ):
            m.load_state_dict(s[k])
        buffer, filled, it, log = s["buffer"], s["filled"], s["it"], s["log"]
        click.echo(f"resumed {run} at iteration {it} ({it * batch / 1000:.1f} kimg)")

    def save():
        E_out = copy.deepcopy(E)  # the shipped form: a W code at every layer, centred on w_avg
        collapse_encoder_to_w(E_out)
        recenter_encoder(E_out, G.mapping.w_avg)
        ckpt.atomic_save(
            {
                "G": G.state_dict(),
                "G_ema": G_ema.state_dict(),
                "D": D.state_dict(),
                "E": E_out.state_dict(),
                "E_train": E.state_dict(),
                "LD": LD.state_dict(),
                "probe": probe.state_dict(),
                "opt_ae": opt_ae.state_dict(),
                "opt_map": opt_map.state_dict(),
                "opt_ld": opt_ld.state_dict(),
                "buffer": buffer,
                "filled": filled,
                "it": it,
                "log": log,
                "G_config": G.config,
                "D_config": D.config,
                "E_config": E.config,
                "style": "photo",
            },
            state_path,
        )
        with torch.no_grad():
            z = torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(123))
            real, _, _ = _batch(seed + 1, 0, 16, size=resolution)
            rec = G_ema.synthesis(E(real).mean(1, keepdim=True).expand(-1, G.num_ws, -1))
            _save_grid(torch.cat([G_ema(z), real, rec]), run / "progress.png")

    total = math.ceil(kimg * 1000 / batch)
    ema_beta = 0.5 ** (batch / (ema_kimg * 1000))
    nb = len(data.ATTRIBUTES)
    clock = _Clock(save_every, minutes)
    t0 = time.monotonic()
    bar = tqdm(total=total, initial=it, desc="autoencoder", unit="it", mininterval=10)
    while it < total:
        real, labels, yaw = _batch(seed, it, batch, size=resolution)
        gen = _seed_all(seed, it)
        for g in opt_ae.param_groups:  # cosine decay to 5%
            g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * it / total)))
        w = E(real).mean(1)
        # the non-fused form is also the faster one for a backward pass on CPU
        rec = G.synthesis(w[:, None].expand(-1, G.num_ws, -1), "const")
        loss_pix = F.mse_loss(rec, real)
        with torch.no_grad():
            target_feat = C.features(real)
        loss_feat = F.mse_loss(C.features(rec), target_feat)
        out = probe(w)
        loss_attr = F.binary_cross_entropy_with_logits(out[:, :nb], labels) + 0.1 * F.mse_loss(
            out[:, nb], yaw
        )
        loss = loss_pix + w_feat * loss_feat + w_attr * loss_attr
        opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        opt_ae.step()

        codes = w.detach()
        idx = torch.arange(filled, filled + batch) % buffer_size
        buffer[idx] = codes
        filled += batch
        pool = buffer[: min(filled, buffer_size)]
        for _ in range(latent_steps):
            w_real = pool[torch.randint(len(pool), (latent_batch,), generator=gen)]
            w_fake = G.mapping(torch.randn(latent_batch, G.z_dim, generator=gen), update_w_avg=True)
            w_real.requires_grad_(True)
            d_real = LD(w_real)
            (grad,) = torch.autograd.grad(d_real.sum(), w_real, create_graph=True)
            loss_ld = (
                F.softplus(LD(w_fake.detach())).mean()
                + F.softplus(-d_real).mean()
                + 0.5 * grad.square().sum(1).mean()
            )
            opt_ld.zero_grad(set_to_none=True)
            loss_ld.backward()
            opt_ld.step()
            LD.requires_grad_(False)
            loss_map = F.softplus(-LD(w_fake)).mean()
            opt_map.zero_grad(set_to_none=True)
            loss_map.backward()
            opt_map.step()
            LD.requires_grad_(True)

        ema_update(G_ema, G, ema_beta)
        with torch.no_grad():
            G_ema.mapping.load_state_dict(G.mapping.state_dict())  # the latent GAN's own result
        it += 1
        bar.update(1)
        if it % 20 == 0:
            psnr = _psnr_db(loss_pix.item())
            log.append((it, loss_pix.item(), loss_feat.item(), loss_attr.item(), loss_ld.item()))
            bar.set_postfix(
                psnr=f"{psnr:.1f}",
                feat=f"{loss_feat.item():.3f}",
                attr=f"{loss_attr.item():.3f}",
                ld=f"{loss_ld.item():.3f}",
            )
        if clock.tick(save):
            break
    bar.close()
    save()
    return {"iterations": it, "kimg": it * batch / 1000, "seconds": time.monotonic() - t0}


def train_transfer_paired(
    run: Path,
    *,
    base: Path,
    classifier: Path,
    kimg: float,
    batch: int = 32,
    seed: int = 3,
    lr: float = 1e-3,
    w_feat: float = 0.5,
    ema_kimg: float = 1.0,
    minutes: float | None = None,
    save_every: float = 120.0,
    threads: int | None = None,
) -> dict:
    """Fine-tune the base synthesis network into the woodblock domain with paired data.

    The renderer draws the same face in both styles, so each photo render is encoded with
    the base encoder (frozen) and the fine-tuned synthesis network learns to draw the
    woodblock render of that face from the same W+ code (pixel + perceptual loss). The
    mapping network stays the base one, so base and transfer share one latent space: what
    layer swapping and toonify rely on."""
    if threads:
        torch.set_num_threads(threads)
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / "state.pt"
    src = ckpt.load(base)
    G = ckpt.generator_from(src["G_ema"]).train()
    G.requires_grad_(False)
    G.synthesis.requires_grad_(True)
    D = ckpt.discriminator_from(src["D"])
    E = ckpt.encoder_from(src["encoder"])
    C = ckpt.load_classifier(classifier)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt = torch.optim.Adam(G.synthesis.parameters(), lr=lr, betas=(0.9, 0.99))
    it, log = 0, []
    if state_path.exists():
        s = torch.load(state_path, weights_only=True)
        G.load_state_dict(s["G"]), G_ema.load_state_dict(s["G_ema"]), opt.load_state_dict(s["opt"])
        it, log = s["it"], s["log"]
        click.echo(f"resumed {run} at iteration {it} ({it * batch / 1000:.1f} kimg)")

    def save():
        ckpt.atomic_save(
            {
                "G": G.state_dict(),
                "G_ema": G_ema.state_dict(),
                "D": D.state_dict(),
                "opt": opt.state_dict(),
                "it": it,
                "log": log,
                "G_config": G.config,
                "D_config": D.config,
                "style": "woodblock",
            },
            state_path,
        )
        with torch.no_grad():
            seeds = np.arange(16) + data.HELDOUT_SEED_BASE
            photo = torch.from_numpy(
                data.to_tensor_range(data.render_batch(seeds, size=G.resolution)[0])
            )
            wood = torch.from_numpy(
                data.to_tensor_range(
                    data.render_batch(seeds, style="woodblock", size=G.resolution)[0]
                )
            )
            _save_grid(torch.cat([photo, G_ema.synthesis(E(photo)), wood]), run / "progress.png")

    total = math.ceil(kimg * 1000 / batch)
    ema_beta = 0.5 ** (batch / (ema_kimg * 1000))
    clock = _Clock(save_every, minutes)
    t0 = time.monotonic()
    bar = tqdm(total=total, initial=it, desc="transfer", unit="it", mininterval=10)
    while it < total:
        rng = np.random.default_rng([seed, it])
        seeds = rng.integers(0, data.HELDOUT_SEED_BASE, size=batch)
        photo = torch.from_numpy(
            data.to_tensor_range(data.render_batch(seeds, size=G.resolution)[0])
        )
        wood = torch.from_numpy(
            data.to_tensor_range(data.render_batch(seeds, style="woodblock", size=G.resolution)[0])
        )
        for g in opt.param_groups:
            g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * it / total)))
        with torch.no_grad():
            ws = E(photo)
            target_feat = C.features(wood)
        out = G.synthesis(ws, "const")
        loss_pix = F.mse_loss(out, wood)
        loss = loss_pix + w_feat * F.mse_loss(C.features(out), target_feat)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(G_ema, G, ema_beta)
        it += 1
        bar.update(1)
        if it % 20 == 0:
            psnr = _psnr_db(loss_pix.item())
            log.append((it, loss_pix.item()))
            bar.set_postfix(psnr=f"{psnr:.1f}")
        if clock.tick(save):
            break
    bar.close()
    save()
    return {"iterations": it, "kimg": it * batch / 1000, "seconds": time.monotonic() - t0}


# --------------------------------------------------------------------------- classifier


def train_classifier(
    run: Path,
    *,
    iters: int,
    batch: int = 32,
    seed: int = 1,
    lr: float = 3e-3,
    minutes: float | None = None,
    save_every: float = 120.0,
    threads: int | None = None,
) -> dict:
    if threads:
        torch.set_num_threads(threads)
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / "state.pt"
    torch.manual_seed(seed)
    C = N.AttributeClassifier(
        num_binary=len(data.ATTRIBUTES), num_regression=len(data.REGRESSIONS), width=16
    )
    opt = torch.optim.Adam(C.parameters(), lr=lr)
    it = 0
    if state_path.exists():
        s = torch.load(state_path, weights_only=True)
        C.load_state_dict(s["C"]), opt.load_state_dict(s["opt"])
        it = s["it"]
    nb = len(data.ATTRIBUTES)

    def save():
        ckpt.atomic_save(
            {"C": C.state_dict(), "opt": opt.state_dict(), "it": it, "C_config": C.config},
            state_path,
        )

    clock = _Clock(save_every, minutes)
    bar = tqdm(total=iters, initial=it, desc="classifier", unit="it", mininterval=5)
    while it < iters:
        x, labels, yaw = _batch(seed, it, batch)
        for g in opt.param_groups:  # cosine decay
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * it / iters))
        out = C(x)
        # yaw is easy and large-valued: down-weighted so the small features (eyes, mouth) get learned
        loss = F.binary_cross_entropy_with_logits(out[:, :nb], labels) + 0.1 * F.mse_loss(
            out[:, nb], yaw
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it += 1
        bar.update(1)
        if it % 50 == 0:
            bar.set_postfix(loss=f"{float(loss):.4f}")
        if clock.tick(save):
            break
    bar.close()
    save()
    return {"iterations": it}


# --------------------------------------------------------------------------- encoder


def train_encoder(
    run: Path,
    *,
    base: Path,
    classifier: Path,
    iters: int,
    batch: int = 8,  # real renders per iteration
    synthetic: int = 16,  # generated samples per iteration (latent regression)
    seed: int = 2,
    lr: float = 5e-4,
    w_pix: float = 1.0,
    w_feat: float = 0.5,
    w_adv: float = 0.05,
    w_latent: float = 1.0,  # latent regression on G's own samples (known w)
    adv_every: int = 4,  # adversarial term and D update every this many iterations
    d_lr: float = 4e-4,
    minutes: float | None = None,
    save_every: float = 120.0,
    threads: int | None = None,
) -> dict:
    """IDInvert's encoder objective on REAL renders: pixel + perceptual + adversarial
    (encoder vs a discriminator that keeps training), plus a latent regression term on
    generated samples (known W+), which gives the encoder a direct signal in W+ and costs
    no backward pass through G. On 2 CPU cores the adversarial part (three passes through
    D) runs every ``adv_every`` iterations only."""
    if threads:
        torch.set_num_threads(threads)
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / "state.pt"
    src = ckpt.load(base)
    G = ckpt.generator_from(src["G_ema"])
    D = ckpt.discriminator_from(src["D"])
    C = ckpt.load_classifier(classifier)
    torch.manual_seed(seed)
    if "encoder" in src:  # fine-tune the jointly trained encoder with the IDInvert objective
        E = ckpt.encoder_from(src["encoder"]).train().requires_grad_(True)
    else:
        E = N.Encoder(num_ws=G.num_ws, w_dim=G.w_dim, resolution=G.resolution)
    recenter_encoder(E, G.mapping.w_avg)
    opt_e = torch.optim.Adam(E.parameters(), lr=lr, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=d_lr, betas=(0.0, 0.99))
    it = 0
    if state_path.exists():
        s = torch.load(state_path, weights_only=True)
        E.load_state_dict(s["E"]), D.load_state_dict(s["D"])
        opt_e.load_state_dict(s["opt_e"]), opt_d.load_state_dict(s["opt_d"])
        it = s["it"]

    def save():
        ckpt.atomic_save(
            {
                "E": E.state_dict(),
                "D": D.state_dict(),
                "opt_e": opt_e.state_dict(),
                "opt_d": opt_d.state_dict(),
                "it": it,
                "E_config": E.config,
            },
            state_path,
        )

    clock = _Clock(save_every, minutes)
    bar = tqdm(total=iters, initial=it, desc="encoder", unit="it", mininterval=5)
    while it < iters:
        real, _, _ = _batch(seed, it, batch, size=G.resolution)
        gen = _seed_all(seed, it)
        for g in opt_e.param_groups:
            g["lr"] = lr * min(1.0, 0.5 * (1 + math.cos(math.pi * it / iters)) + 0.05)
        with torch.no_grad():  # W+ targets: half plain W, half style-mixed
            w = G.mapping(torch.randn(synthetic, G.z_dim, generator=gen))[:, None].repeat(
                1, G.num_ws, 1
            )
            w2 = G.mapping(torch.randn(synthetic, G.z_dim, generator=gen))
            cut = torch.randint(1, G.num_ws, (synthetic,), generator=gen)
            mix = (torch.arange(G.num_ws)[None] >= cut[:, None]) & (
                torch.rand(synthetic, 1, generator=gen) < 0.5
            )
            w = torch.where(mix[..., None], w2[:, None], w)
            synth = G.synthesis(w, "const", fused=True)
        ws = E(torch.cat([real, synth]))
        ws_real, ws_synth = ws[:batch], ws[batch:]
        rec = G.synthesis(ws_real, "const")  # non-fused: the faster backward pass on CPU
        adversarial = it % adv_every == 0
        loss_pix = F.mse_loss(rec, real)
        loss_feat = F.mse_loss(C.features(rec), C.features(real))
        loss_lat = F.mse_loss(ws_synth, w)
        loss = w_pix * loss_pix + w_feat * loss_feat + w_latent * loss_lat
        if adversarial:
            D.requires_grad_(False)
            loss = loss + w_adv * adv_every * F.softplus(-D(rec)).mean()
        opt_e.zero_grad(set_to_none=True)
        loss.backward()
        opt_e.step()
        if adversarial:
            D.requires_grad_(True)
            loss_d = F.softplus(D(rec.detach())).mean() + F.softplus(-D(real)).mean()
            if it % (adv_every * 4) == 0:
                loss_d = loss_d + r1_penalty(D, real) * 5.0 * 4
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        it += 1
        bar.update(1)
        if it % 10 == 0:
            psnr = _psnr_db(loss_pix.item())
            bar.set_postfix(
                pix=f"{loss_pix.item():.4f}", psnr=f"{psnr:.1f}", lat=f"{loss_lat.item():.4f}"
            )
        if clock.tick(save):
            break
    bar.close()
    save()
    return {"iterations": it}


# --------------------------------------------------------------------------- CLI


@click.group()
def cli() -> None:
    """Train stylegate's models (resumable: rerun the same command to continue)."""


_common = [
    click.option(
        "--run",
        "run",
        type=click.Path(path_type=Path),
        required=True,
        help="run directory (state.pt)",
    ),
    click.option("--seed", type=int, default=None),
    click.option(
        "--minutes", type=float, default=None, help="stop (and save) after this many minutes"
    ),
    click.option("--save-every", type=float, default=120.0, help="seconds between checkpoints"),
    click.option("--threads", type=int, default=None, help="torch intra-op threads"),
]


def common(f):
    for opt in reversed(_common):
        f = opt(f)
    return f


def _kw(seed, default, **kw):
    kw["seed"] = default if seed is None else seed
    return kw


@cli.command()
@common
@click.option("--kimg", type=float, default=150.0, help="thousands of real images to show")
@click.option("--batch", type=int, default=32)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--r1-gamma", type=float, default=1.0, show_default=True)
@click.option(
    "--joint-encoder",
    "joint_classifier",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="classifier checkpoint: train the encoder jointly (reconstruction of real renders)",
)
def gan(run, seed, minutes, save_every, threads, kimg, batch, lr, r1_gamma, joint_classifier):
    """Train the base GAN on photo-style renders."""
    click.echo(
        train_gan(
            run,
            **_kw(
                seed,
                0,
                kimg=kimg,
                batch=batch,
                minutes=minutes,
                save_every=save_every,
                threads=threads,
                lr=lr,
                r1_gamma=r1_gamma,
                joint_classifier=joint_classifier,
            ),
        )
    )


@cli.command()
@common
@click.option(
    "--classifier", "classifier_path", type=click.Path(path_type=Path, exists=True), required=True
)
@click.option("--kimg", type=float, default=200.0, help="thousands of real images to show")
@click.option("--batch", type=int, default=32)
@click.option("--lr", type=float, default=2e-3, show_default=True)
def autoencoder(run, seed, minutes, save_every, threads, classifier_path, kimg, batch, lr):
    """Pretrain synthesis + encoder as an autoencoder through W, mapping as a latent GAN."""
    click.echo(
        train_autoencoder(
            run,
            **_kw(
                seed,
                4,
                classifier=classifier_path,
                kimg=kimg,
                batch=batch,
                lr=lr,
                minutes=minutes,
                save_every=save_every,
                threads=threads,
            ),
        )
    )


@cli.command()
@common
@click.option("--base", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--kimg", type=float, default=20.0)
@click.option("--batch", type=int, default=32)
@click.option(
    "--classifier",
    "classifier_path",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="paired fine-tune (default when given): base encoder + pixel/perceptual loss",
)
@click.option(
    "--adversarial", is_flag=True, help="fine-tune with the GAN loss instead of paired renders"
)
def transfer(
    run, seed, minutes, save_every, threads, base, kimg, batch, classifier_path, adversarial
):
    """Fine-tune the base GAN on woodblock-style renders (the transfer domain)."""
    if adversarial:
        click.echo(
            train_gan(
                run,
                **_kw(
                    seed,
                    3,
                    kimg=kimg,
                    batch=batch,
                    style="woodblock",
                    init=base,
                    lr=1e-3,
                    minutes=minutes,
                    save_every=save_every,
                    threads=threads,
                    ema_kimg=2.0,
                ),
            )
        )
        return
    if classifier_path is None:
        raise click.UsageError(
            "--classifier is required for the paired fine-tune (or pass --adversarial)"
        )
    click.echo(
        train_transfer_paired(
            run,
            **_kw(
                seed,
                3,
                base=base,
                classifier=classifier_path,
                kimg=kimg,
                batch=batch,
                minutes=minutes,
                save_every=save_every,
                threads=threads,
            ),
        )
    )


@cli.command()
@common
@click.option("--iters", type=int, default=2500)
def classifier(run, seed, minutes, save_every, threads, iters):
    """Train the attribute classifier (its trunk is the perceptual feature network)."""
    click.echo(
        train_classifier(
            run,
            **_kw(seed, 1, iters=iters, minutes=minutes, save_every=save_every, threads=threads),
        )
    )


@cli.command()
@common
@click.option("--base", type=click.Path(path_type=Path, exists=True), required=True)
@click.option(
    "--classifier", "classifier_path", type=click.Path(path_type=Path, exists=True), required=True
)
@click.option("--iters", type=int, default=3000)
@click.option("--batch", type=int, default=8)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option(
    "--adv-weight",
    type=float,
    default=0.05,
    show_default=True,
    help="weight of the adversarial term (the discriminator keeps training)",
)
def encoder(
    run, seed, minutes, save_every, threads, base, classifier_path, iters, batch, lr, adv_weight
):
    """Train the domain-guided encoder (IDInvert objective) against the base generator."""
    click.echo(
        train_encoder(
            run,
            **_kw(
                seed,
                2,
                base=base,
                classifier=classifier_path,
                iters=iters,
                batch=batch,
                lr=lr,
                w_adv=adv_weight,
                minutes=minutes,
                save_every=save_every,
                threads=threads,
            ),
        )
    )


@cli.command()
@click.option("--run", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--what", type=click.Choice(["gan", "classifier", "encoder"]), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def ship(run, what, out):
    """Write a compact fp16 checkpoint from a run's state (adds to OUT if it exists)."""
    s = torch.load(run / "state.pt", weights_only=True)
    shipped = ckpt.load(out) if out.exists() else {}
    half = ckpt._half
    if what == "gan":
        shipped["G_ema"] = {"config": s["G_config"], "state_dict": half(s["G_ema"])}
        shipped["D"] = {"config": s["D_config"], "state_dict": half(s["D"])}
        shipped["style"] = s.get("style", "photo")
        shipped["kimg"] = s["it"] * 32 / 1000
        if "E" in s:
            shipped["encoder"] = {"config": s["E_config"], "state_dict": half(s["E"])}
    elif what == "classifier":
        shipped["classifier"] = {"config": s["C_config"], "state_dict": half(s["C"])}
    else:
        shipped["encoder"] = {"config": s["E_config"], "state_dict": half(s["E"])}
        if "D" in s and "D" in shipped:  # the discriminator kept training against the encoder
            shipped["D"] = {"config": shipped["D"]["config"], "state_dict": half(s["D"])}
    ckpt.atomic_save(shipped, out)
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    cli()
