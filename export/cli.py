"""``stylegate export``: a thin click wrapper over export.api, export.blend, export.importers
and export.tensorrt."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click

from stylegate.export.blend import DEFAULT_SWAP_RESOLUTION

CHECKPOINTS = Path("checkpoints")
SOURCE_FORMATS = ("auto", "nvlabs", "rosinality")


class _SourceOption(click.Option):
    """``--from [FORMAT] PATH``: the format word is optional (``auto``: by content)."""

    def add_to_parser(self, parser, ctx) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            opt = parser._long_opt.get(name) or parser._short_opt.get(name)
            if opt is None:
                continue
            store = opt.process

            def process(value, state, store=store):
                if value in SOURCE_FORMATS and state.rargs and not state.rargs[0].startswith("-"):
                    value = (value, state.rargs.pop(0))
                store(value, state)

            opt.process = process


def _source(ctx, param, value):
    if value is None:
        return None
    fmt, path = value if isinstance(value, tuple) else ("auto", value)
    if path in SOURCE_FORMATS:
        raise click.BadParameter(f"{path!r} without a checkpoint PATH after it", ctx, param)
    return fmt, Path(path)


def _directions(samples: int | None, image_samples: int | None, skip: bool):
    from stylegate.export.directions import DirectionOptions

    if skip:
        return None
    kw = {}
    if samples:
        kw["num_w_samples"] = samples
    if image_samples:
        kw["num_image_samples"] = image_samples
    return DirectionOptions(**kw)


def _summary(meta: dict, seconds: float) -> None:
    for r in meta.get("_export", []):
        if "model" in r:
            click.echo(f"  {r['model']:<22} {r['bytes'] / 1e6:7.2f} MB  {r['seconds']:6.1f} s")
        else:
            click.echo(f"  directions of {r['directions']:<8}          {r['seconds']:6.1f} s")
    click.echo(f"exported {', '.join(meta['generators'])} in {seconds:.0f} s")


@click.group(invoke_without_command=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("model_repository"),
    show_default=True,
    help="model repository to write",
)
@click.option(
    "--base", type=click.Path(path_type=Path), default=CHECKPOINTS / "base.pt", show_default=True
)
@click.option(
    "--transfer",
    type=click.Path(path_type=Path),
    default=CHECKPOINTS / "transfer.pt",
    show_default=True,
)
@click.option(
    "--classifier",
    type=click.Path(path_type=Path),
    default=CHECKPOINTS / "classifier.pt",
    show_default=True,
    help="feature network and attribute labels",
)
@click.option(
    "--swap-resolution",
    type=int,
    default=DEFAULT_SWAP_RESOLUTION,
    show_default=True,
    help="served blend: transfer weights up to this resolution",
)
@click.option(
    "--blend-width",
    type=float,
    default=None,
    help="served blend: logistic width in octaves (default: hard swap)",
)
@click.option("--no-blend", is_flag=True, help="do not serve a blend of base and transfer")
@click.option(
    "--from",
    "source",
    cls=_SourceOption,
    type=click.UNPROCESSED,
    callback=_source,
    default=None,
    metavar="[FORMAT] PATH",
    help="import and export a user's StyleGAN2 checkpoint; FORMAT auto (default: by content) "
    "| nvlabs (NETWORK.pkl) | rosinality (CKPT.pt)",
)
@click.option(
    "--name",
    default="base",
    show_default=True,
    help="with --from: the imported generator's name (the `model` of requests); other "
    "generators in --out are kept",
)
@click.option(
    "--features",
    "feature_choice",
    default=None,
    metavar="discriminator|none|VGG16_FILE",
    help="with --from: perceptual features for inversion: the checkpoint's own discriminator "
    "(default when it has one), none (pixel + SSIM structure), or VGG16 weights "
    "(torchvision state dict or the NVlabs projector's vgg16.pt)",
)
@click.option("--samples", type=int, default=None, help="sampled W for GANSpace and direction stds")
@click.option(
    "--image-samples", type=int, default=None, help="generated images labelled for InterFaceGAN"
)
@click.option("--no-directions", is_flag=True, help="skip the latent directions")
@click.option(
    "--tensorrt", is_flag=True, help="build TensorRT model.plan files for the repository (GPU only)"
)
@click.option(
    "--precision",
    type=click.Choice(["fp16", "fp32"]),
    default="fp16",
    show_default=True,
    help="TensorRT precision",
)
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def export(
    ctx,
    out,
    base,
    transfer,
    classifier,
    swap_resolution,
    blend_width,
    no_blend,
    source,
    name,
    feature_choice,
    samples,
    image_samples,
    no_directions,
    tensorrt,
    precision,
    verbose,
):
    """Export PyTorch checkpoints into a Triton model repository (ONNX + configs + stylegate.json).

    With no arguments: the shipped base, transfer and classifier checkpoints, and their
    layer-swapped blend, into model_repository/.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    if ctx.invoked_subcommand is not None:
        return
    if tensorrt:
        from stylegate.export import tensorrt as trt

        try:
            built = trt.build_repository(out, precision=precision)
        except trt.TensorRTUnavailable as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        for path in built:
            click.echo(f"built {path}")
        return
    options = _directions(samples, image_samples, no_directions)
    t0 = time.monotonic()
    if source is not None:
        from stylegate.export import api, importers

        fmt, path = source
        try:
            imported = importers.load_checkpoint(path, fmt)
        except importers.ConversionError as e:
            click.echo(f"error: {e}", err=True)  # one line: the file, what it is, what we need
            sys.exit(2)
        from stylegate.export.features import FeatureNetworkError

        try:
            meta = api.export_imported(
                out,
                imported,
                features=feature_choice,
                directions=options,
                source=path,
                name=name,
            )
        except FeatureNetworkError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
    else:
        missing = [str(p) for p in (base, transfer, classifier) if not p.exists()]
        if not base.exists():
            raise click.UsageError(f"checkpoint not found: {base}")
        from stylegate.export import api

        meta = api.export_checkpoints(
            out,
            base=base,
            transfer=transfer if transfer.exists() else None,
            classifier=classifier if classifier.exists() else None,
            blend=not no_blend,
            swap_resolution=swap_resolution,
            blend_width=blend_width,
            directions=options,
        )
        if missing:
            click.echo(f"warning: skipped missing {', '.join(missing)}", err=True)
    _summary(meta, time.monotonic() - t0)


@export.command()
@click.option(
    "--base",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="base checkpoint (G_ema)",
)
@click.option(
    "--transfer",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="transfer checkpoint",
)
@click.option(
    "--swap-resolution", type=int, required=True, help="transfer weights at resolutions <= this"
)
@click.option(
    "--blend-width",
    type=float,
    default=None,
    help="logistic blend width in octaves (default: hard swap)",
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="blended checkpoint to write"
)
def blend(base, transfer, swap_resolution, blend_width, out):
    """Layer swapping: write a checkpoint with the transfer model's synthesis weights at low
    resolutions and the base model's above (mapping from the base)."""
    from stylegate.export.blend import blend_checkpoints

    try:
        blend_checkpoints(
            base, transfer, out, swap_resolution=swap_resolution, blend_width=blend_width
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    click.echo(
        json.dumps(
            {"wrote": str(out), "swap_resolution": swap_resolution, "blend_width": blend_width}
        )
    )
