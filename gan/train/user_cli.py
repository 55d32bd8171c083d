"""``stylegate train``: training for the models a user serves.

``stylegate train encoder --model NAME`` trains a domain-guided encoder for a generator
imported with ``stylegate export --from`` (recipe: imported_encoder.py) and installs it,
with the full ``inversion_step``, into the model repository, so ``in_domain`` and
``encoder`` inversion work on that model. The torch weights come from the checkpoint the
export recorded in the generator's stylegate.json entry (``"source"``), or ``--checkpoint``.
Rerunning the same command resumes the run and installs again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import torch

from stylegate.service.signatures import METADATA_FILE

MODEL_ORDER = ("mapping", "synthesis", "encoder", "features", "inversion_step")


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line, exit code 2."""


def read_entry(repository: Path, name: str) -> tuple[dict, dict]:
    """(the repository's metadata, generator ``name``'s entry in it)."""
    path = repository / METADATA_FILE
    if not path.is_file():
        raise UserError(f"{path}: no such file; export a model first (stylegate export --from)")
    try:
        meta = json.loads(path.read_text())
        generators = meta["generators"]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a stylegate repository ({e!r})") from None
    if name not in generators:
        raise UserError(
            f"--model {name}: no such generator in {repository} (it has {', '.join(generators)})"
        )
    return meta, generators[name]


def source_of(entry: dict, name: str, checkpoint: Path | None) -> tuple[Path, str, str | None]:
    """(checkpoint file, format, feature choice) of an imported generator's entry;
    ``checkpoint`` overrides the recorded file."""
    source = entry.get("source")
    fmt = "auto"  # a --checkpoint is read by its content
    if checkpoint is None:
        if not isinstance(source, dict) or "path" not in source:
            raise UserError(
                f"--model {name}: was not imported with `stylegate export --from` (no source "
                "checkpoint recorded); pass --checkpoint FILE (its NVlabs .pkl or rosinality .pt)"
            )
        checkpoint, fmt = Path(source["path"]), source.get("format", "auto")
        if not checkpoint.is_file():
            raise UserError(
                f"--model {name}: its source checkpoint {checkpoint} is missing; "
                "pass --checkpoint FILE"
            )
    features = source.get("features") if isinstance(source, dict) else None
    return checkpoint, fmt, features


def check_same_model(entry: dict, name: str, checkpoint: Path, generator) -> None:
    """The checkpoint must hold the generator the repository serves as ``name``."""
    have = {k: getattr(generator, k) for k in ("resolution", "num_ws", "w_dim", "z_dim", "c_dim")}
    want = {k: entry.get(k, 0) for k in have}
    if have != want:
        raise UserError(f"{checkpoint}: a generator with {have}; --model {name} has {want}")
    w_avg = generator.mapping.w_avg.float().numpy()
    if not np.allclose(w_avg, np.asarray(entry["w_avg"]), rtol=1e-4, atol=1e-4):
        raise UserError(
            f"{checkpoint}: its generator is not the one served as --model {name} "
            "(different w_avg); pass the checkpoint it was exported from"
        )


def install_encoder(
    repository: Path,
    name: str,
    generator: torch.nn.Module,
    encoder: torch.nn.Module,
    feature_net: torch.nn.Module,
    *,
    extra: dict | None = None,
) -> dict:
    """Export ``encoder``, ``features`` and the full ``inversion_step`` of generator ``name``
    into ``repository`` and rewrite its stylegate.json entry (everything else kept). The
    models are written aside and moved in, then the metadata is replaced atomically, so a
    gateway reloading at any moment reads a consistent repository. Returns the new entry."""
    from stylegate.export import onnx_export
    from stylegate.export.features import describe
    from stylegate.export.repository import feature_dims, model_name, write_model

    meta, entry = read_entry(repository, name)
    generator, encoder = generator.eval().cpu(), encoder.eval().cpu()
    feature_net = feature_net.eval().cpu()
    dims = {k: entry[k] for k in ("resolution", "num_ws", "w_dim", "z_dim")}
    if entry.get("c_dim"):
        dims["c_dim"] = entry["c_dim"]
    dims.update(feature_dims(feature_net, generator.resolution))
    modules = {
        "encoder": onnx_export.wrap("encoder", encoder=encoder),
        "features": onnx_export.wrap("features", feature_net=feature_net),
        "inversion_step": onnx_export.wrap(
            "inversion_step", generator=generator, encoder=encoder, feature_net=feature_net
        ),
    }
    default = meta["default_generator"]
    staging = Path(tempfile.mkdtemp(prefix=f".{repository.name}-{name}-", dir=repository.parent))
    try:
        names = {}
        for network, module in modules.items():
            names[network] = model_name(name, network, default)
            write_model(staging, names[network], network, module, dims)
        (staging / "replaced").mkdir()
        for model in names.values():
            if (repository / model).exists():
                os.replace(repository / model, staging / "replaced" / model)
            os.replace(staging / model, repository / model)
        models = {**entry["models"], **names}
        entry.update(
            dims,
            models={k: models[k] for k in MODEL_ORDER if k in models}
            | {k: v for k, v in models.items() if k not in MODEL_ORDER},
            feature_network=describe(feature_net),
            **(extra or {}),
        )
        meta["generators"][name] = entry
        tmp = staging / METADATA_FILE
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(tmp, repository / METADATA_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry


def train_encoder(
    *,
    model: str,
    repository: Path,
    checkpoint: Path | None,
    run: Path,
    minutes: float | None,
    iters: int | None,  # None: the recipe's default
    images: Path | None,
    device: str,
    threads: int | None = None,
    save_every: float = 120.0,
) -> tuple[dict, dict]:
    """Train (or resume) the encoder of generator ``model`` and install it; returns (the
    Trainer's result, the generator's new entry). Raises UserError for a user's mistake."""
    from stylegate.export import api, importers
    from stylegate.export.features import FeatureNetworkError
    from stylegate.gan import checkpoint as ckpt
    from stylegate.gan.train.imported_encoder import ImportedEncoder, ImportedEncoderConfig
    from stylegate.gan.train.trainer import ConfigError, Trainer

    _, entry = read_entry(repository, model)
    path, fmt, features = source_of(entry, model, checkpoint)
    try:
        imported = importers.load_checkpoint(path, fmt)
        feature_net = api.imported_feature_net(imported, features)
    except (importers.ConversionError, FeatureNetworkError) as e:
        raise UserError(str(e)) from None
    check_same_model(entry, model, path, imported.generator)
    features = api.imported_feature_choice(imported, features)
    cfg = ImportedEncoderConfig(
        checkpoint=path,
        format=imported.source_format,
        features=features,
        images=images,
        **({} if iters is None else {"iters": iters}),
    )
    try:
        trainer = Trainer(
            run=run, device=device, minutes=minutes, threads=threads, save_every=save_every
        )
        result = {**trainer.fit(ImportedEncoder, cfg), "total": cfg.iters}
    except ConfigError as e:
        raise UserError(str(e)) from None
    state = torch.load(run / "state.pt", map_location="cpu", weights_only=True)
    E = ckpt.encoder_from({"config": state["E_config"], "state_dict": state["E"]})
    training = {"iterations": state["it"], "kimg": round(state["it"] * cfg.batch / 1000, 2)}
    if images is not None:
        training["images"] = str(images.resolve())
    new = install_encoder(
        repository,
        model,
        imported.generator,
        E,
        feature_net,
        extra={"encoder_training": training},
    )
    return result, new


@click.group()
def train() -> None:
    """Train networks for the models you serve."""


@train.command("encoder")
@click.option("--model", required=True, metavar="NAME", help="generator in the repository")
@click.option(
    "--repository",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("model_repository"),
    show_default=True,
    help="model repository to install the encoder into",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="the model's NVlabs .pkl or rosinality .pt (default: the one it was exported from)",
)
@click.option(
    "--run",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="run directory (default: runs/encoder-NAME); rerun the command to resume",
)
@click.option("--minutes", type=float, default=None, help="stop (and install) after this long")
@click.option("--iters", type=int, default=None, help="iterations in all (default: 20000)")
@click.option(
    "--images",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="a folder of your own images, trained on besides the generator's samples",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=int, default=None, help="torch intra-op threads")
@click.option(
    "--save-every", type=float, default=120.0, show_default=True, help="seconds between saves"
)
def encoder(
    model, repository, checkpoint, run, minutes, iters, images, device, threads, save_every
):
    """Train a domain-guided encoder for an imported generator and install it (with the full
    inversion step) so `in_domain` and `encoder` inversion work on it."""
    run = run or Path("runs") / f"encoder-{model}"
    try:
        result, entry = train_encoder(
            model=model,
            repository=repository,
            checkpoint=checkpoint,
            run=run,
            minutes=minutes,
            iters=iters,
            images=images,
            device=device,
            threads=threads,
            save_every=save_every,
        )
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    done, total = entry["encoder_training"]["iterations"], result["total"]
    click.echo(
        f"trained {done}/{total} iterations ({result['seconds']:.0f} s this run) in {run}"
        + ("" if done >= total else "; rerun the same command to continue")
    )
    click.echo(
        f"installed encoder and inversion_step of {model!r} into {repository}: "
        "in_domain and encoder inversion are available"
    )
    click.echo(
        "a running gateway picks it up after `stylegate reload` (or `kill -HUP <gateway pid>`)"
    )
