"""Python API of the exporter (the CLI and the test fixtures call these).

- ``export_checkpoints(out, base=..., transfer=..., classifier=...)``: the shipped models
  (base, transfer, and their layer-swapped blend) into a model repository.
- ``export_random(out, resolution=16, seed=0)``: the same layout from small random-weight
  networks, for tests (a few seconds to a minute on 2 cores).
- ``export_generator(out, G, features=..., discriminator=...)``: one converted generator
  with a feature network and its inversion step; ``export_imported`` for ``--from``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from stylegate.export import blend as B
from stylegate.export import directions as D
from stylegate.export import features as F
from stylegate.export.repository import GeneratorSpec, add_generator, write_repository
from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data
from stylegate.gan import networks as N

SHIPPED = Path("checkpoints")

# Small directions budget for test repositories.
TINY_DIRECTIONS = D.DirectionOptions(
    num_w_samples=2000,
    num_image_samples=400,
    sefa_components=3,
    sefa_group_components=2,
    ganspace_components=3,
    batch=200,
)


def export_checkpoints(
    out: str | os.PathLike,
    *,
    base: str | os.PathLike = SHIPPED / "base.pt",
    transfer: str | os.PathLike | None = SHIPPED / "transfer.pt",
    classifier: str | os.PathLike | None = SHIPPED / "classifier.pt",
    blend: bool = True,
    swap_resolution: int = B.DEFAULT_SWAP_RESOLUTION,
    blend_width: float | None = None,
    directions: D.DirectionOptions | None = D.DEFAULT_OPTIONS,
) -> dict:
    """Export stylegate checkpoints into the model repository ``out``.

    base: checkpoint with ``G_ema`` and ``encoder`` (base generator: mapping, synthesis,
        encoder; with a classifier also features and inversion_step).
    transfer: checkpoint with ``G_ema`` of the same architecture (transfer_mapping,
        transfer_synthesis), or None.
    classifier: checkpoint with ``classifier``: the perceptual feature network and the
        attribute labels of InterFaceGAN directions, or None.
    blend: also serve the layer-swapped blend of base and transfer (blend_synthesis, base mapping).
    Returns the written metadata (see ``write_repository``).
    """
    src = ckpt.load(base)
    G = ckpt.generator_from(src["G_ema"])
    E = ckpt.encoder_from(src["encoder"]) if "encoder" in src else None
    C = ckpt.load_classifier(classifier) if classifier is not None else None
    labels = (
        {"classifier": C, "attributes": data.ATTRIBUTES, "regressions": data.REGRESSIONS}
        if C is not None
        else {}
    )
    specs = [
        GeneratorSpec(
            "base",
            G,
            description=f"{G.resolution}px cartoon faces ({src.get('style', 'photo')} style)",
            encoder=E,
            feature_net=C,
            extra={"style": src.get("style", "photo")},
            **labels,
        )
    ]
    if transfer is not None:
        tsrc = ckpt.load(transfer)
        T = ckpt.generator_from(tsrc["G_ema"])
        style = tsrc.get("style", "transfer")
        specs.append(
            GeneratorSpec(
                "transfer",
                T,
                description=f"{T.resolution}px cartoon faces ({style} style)",
                extra={"style": style},
                **labels,
            )
        )
        if blend:
            BG = B.blend_generators(G, T, swap_resolution=swap_resolution, blend_width=blend_width)
            specs.append(
                GeneratorSpec(
                    "blend",
                    BG,
                    mapping_from="base",
                    description=(
                        f"layer swap: {style} up to {swap_resolution}px, "
                        f"{src.get('style', 'photo')} above"
                    ),
                    extra={
                        "style": "blend",
                        "blend": {"swap_resolution": swap_resolution, "blend_width": blend_width},
                    },
                    **labels,
                )
            )
    return write_repository(out, specs, directions=directions)


def export_generator(
    out: str | os.PathLike,
    generator: N.Generator,
    *,
    description: str = "",
    features: str | os.PathLike | torch.nn.Module | None = None,  # see below
    discriminator: Mapping[str, torch.Tensor] | None = None,  # the checkpoint's own D state dict
    conv_clamp: float | None = None,  # the NVlabs discriminator's conv_clamp, if any
    encoder: torch.nn.Module | None = None,  # a trained domain-guided encoder, if any
    directions: D.DirectionOptions | None = D.DEFAULT_OPTIONS,
    extra: Mapping[str, object] | None = None,  # more keys for its stylegate.json entry
    name: str = "base",  # the generator's name in the repository (requests' ``model``)
) -> dict:
    """Export one (imported) generator into the repository ``out`` as ``name``, next to the
    generators it already serves: mapping, synthesis, a ``features`` network and the
    ``inversion_step`` (so ``optimize`` works straight away; its domain term is 0 until an
    ``encoder`` is given, which also serves ``encoder`` and so ``in_domain``).

    features: "discriminator" (the checkpoint's D; the default when ``discriminator`` is
        given), "none" (SSIM-structure features, no network; the default otherwise), a path
        to VGG16 weights (torchvision state dict or the NVlabs projector's vgg16.pt), or a
        module with ``features(img)``.
    """
    if features is None:
        features = "discriminator" if discriminator is not None else "none"
    if isinstance(features, torch.nn.Module):
        net = features
    else:
        net = F.build_feature_net(
            features,
            resolution=generator.resolution,
            discriminator=discriminator,
            conv_clamp=conv_clamp,
        )
    spec = GeneratorSpec(
        name,
        generator,
        description=description,
        encoder=encoder,
        feature_net=net.eval().requires_grad_(False),
        extra={"feature_network": F.describe(net), **(extra or {})},
    )
    return add_generator(out, spec, directions=directions)


def export_imported(
    out: str | os.PathLike,
    imported,  # export.importers.ImportedCheckpoint
    *,
    features: str | os.PathLike | None = None,  # as export_generator's; None: its default
    directions: D.DirectionOptions | None = D.DEFAULT_OPTIONS,
    source: str | os.PathLike | None = None,  # the checkpoint file it was read from
    name: str = "base",  # the generator's name in the repository
) -> dict:
    """``stylegate export --from``: an imported checkpoint with its feature network and
    inversion step. With ``source``, the generator's entry records where its torch weights
    and feature network come from (``"source": {"path", "format", "features"}``), which
    ``stylegate train encoder --model NAME`` reads back."""
    choice = imported_feature_choice(imported, features)
    extra = None
    if source is not None:
        extra = {
            "source": {
                "path": str(Path(source).resolve()),
                "format": imported.source_format,
                "features": choice,
            }
        }
    return export_generator(
        out,
        imported.generator,
        description=imported.description,
        features=imported_feature_net(imported, choice),
        directions=directions,
        extra=extra,
        name=name,
    )


def imported_feature_choice(imported, features: str | os.PathLike | None = None) -> str:
    """``--features`` as recorded: "discriminator", "none" or a VGG16 file's absolute path;
    None: the checkpoint's discriminator when it has one, else "none"."""
    if features is None:
        return "discriminator" if imported.discriminator is not None else "none"
    if str(features) in F.FEATURE_CHOICES:
        return str(features)
    return str(Path(features).resolve())


def imported_feature_net(imported, features: str | os.PathLike | None = None) -> torch.nn.Module:
    """The perceptual feature network an imported checkpoint is exported (and its encoder
    trained) with. NVlabs' training sets one ``conv_clamp`` for G and D (256 in the fp16
    configs), so the discriminator features use the generator's."""
    clamp = next(
        (
            float(m.conv_clamp)
            for m in imported.generator.modules()
            if getattr(m, "conv_clamp", None) is not None
        ),
        None,
    )
    return F.build_feature_net(
        imported_feature_choice(imported, features),
        resolution=imported.generator.resolution,
        discriminator=imported.discriminator,
        conv_clamp=clamp if imported.source_format == "nvlabs" else None,
    ).eval()


def random_models(*, resolution: int = 16, seed: int = 0) -> dict[str, torch.nn.Module]:
    """Small random-weight stand-ins of the shipped networks: base and transfer generators
    (non-zero noise strengths), encoder, classifier (width 4: 16 feature channels)."""
    torch.manual_seed(seed)
    ch = {r: (32 if r <= 8 else 16) for r in (2**i for i in range(2, resolution.bit_length()))}
    enc_ch = dict(ch)

    def generator() -> N.Generator:
        g = N.Generator(z_dim=32, w_dim=32, resolution=resolution, channels=ch, mapping_layers=2)
        with torch.no_grad():
            g.mapping.w_avg.copy_(g.mapping(torch.randn(256, 32)).mean(0))
            for m in g.modules():
                if isinstance(m, N.SynthesisLayer):
                    m.noise_strength.fill_(0.1)
        return g.eval().requires_grad_(False)

    G, T = generator(), generator()
    E = N.Encoder(num_ws=G.num_ws, w_dim=G.w_dim, resolution=resolution, channels=enc_ch)
    E.w_avg.copy_(G.mapping.w_avg)
    C = N.AttributeClassifier(
        resolution=resolution,
        num_binary=len(data.ATTRIBUTES),
        num_regression=len(data.REGRESSIONS),
        width=4,
    )
    return {
        "base": G,
        "transfer": T,
        "encoder": E.eval().requires_grad_(False),
        "classifier": C.eval().requires_grad_(False),
    }


def random_checkpoints(
    directory: str | os.PathLike, *, resolution: int = 16, seed: int = 0
) -> dict[str, Path]:
    """Write random-weight ``base.pt``, ``transfer.pt`` and ``classifier.pt`` in the shipped
    format into ``directory`` (test stand-ins; never into checkpoints/)."""
    directory = Path(directory)
    m = random_models(resolution=resolution, seed=seed)
    paths = {k: directory / f"{k}.pt" for k in ("base", "transfer", "classifier")}
    ckpt.atomic_save(
        {
            "G_ema": ckpt.pack_module(m["base"]),
            "encoder": ckpt.pack_module(m["encoder"]),
            "style": "photo",
        },
        paths["base"],
    )
    ckpt.atomic_save(
        {"G_ema": ckpt.pack_module(m["transfer"]), "style": "woodblock"}, paths["transfer"]
    )
    ckpt.atomic_save({"classifier": ckpt.pack_module(m["classifier"])}, paths["classifier"])
    return paths


def export_random(
    out: str | os.PathLike,
    *,
    resolution: int = 16,
    seed: int = 0,
    directions: D.DirectionOptions | None = TINY_DIRECTIONS,
) -> dict:
    """A complete test repository from random-weight networks: base (all five models),
    transfer, and a blend swapped at half the resolution; directions on a small budget."""
    m = random_models(resolution=resolution, seed=seed)
    labels = {
        "classifier": m["classifier"],
        "attributes": data.ATTRIBUTES,
        "regressions": data.REGRESSIONS,
    }
    swap = resolution // 2
    specs = [
        GeneratorSpec(
            "base",
            m["base"],
            description=f"random {resolution}px (test)",
            encoder=m["encoder"],
            feature_net=m["classifier"],
            extra={"style": "photo"},
            **labels,
        ),
        GeneratorSpec(
            "transfer",
            m["transfer"],
            description=f"random {resolution}px transfer (test)",
            extra={"style": "woodblock"},
            **labels,
        ),
        GeneratorSpec(
            "blend",
            B.blend_generators(m["base"], m["transfer"], swap_resolution=swap),
            description="random blend (test)",
            mapping_from="base",
            extra={"style": "blend", "blend": {"swap_resolution": swap, "blend_width": None}},
            **labels,
        ),
    ]
    return write_repository(out, specs, directions=directions)
