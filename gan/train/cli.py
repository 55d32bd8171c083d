"""``python -m stylegate.gan.train RECIPE ...``: one command per recipe, its options read
from the recipe's config dataclass and the Trainer's fields (so defaults live only there),
and ``ship``."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from pathlib import Path

import click

from stylegate.gan.train.recipes import RECIPES
from stylegate.gan.train.ship import ship as ship_run
from stylegate.gan.train.trainer import ConfigError, Help, Recipe, Trainer


def options(cls: type) -> list:
    """One click option per dataclass field: ``--field-name``, its type, its default and the
    ``Help`` in its annotation."""
    hints = typing.get_type_hints(cls, include_extras=True)
    made = []
    for f in dataclasses.fields(cls):
        kind, help_ = hints[f.name], Help("")
        if typing.get_origin(kind) is typing.Annotated:
            kind, help_ = typing.get_args(kind)
        if isinstance(kind, types.UnionType):  # X | None
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        required = f.default is dataclasses.MISSING
        kw = {"help": help_.text, "required": required, "show_default": True}
        if not required:
            kw["default"] = f.default
        if kind is bool:
            kw["is_flag"] = True
        elif kind is Path:
            kw["type"] = click.Path(path_type=Path, exists=help_.exists)
        elif help_.choices:
            kw["type"] = click.Choice(help_.choices)
        else:
            kw["type"] = kind
        made.append(click.option("--" + f.name.replace("_", "-"), f.name, **kw))
    return made


def recipe_command(recipe_cls: type[Recipe]) -> click.Command:
    trainer_fields = [f.name for f in dataclasses.fields(Trainer)]

    def run(**kw) -> None:
        trainer_kw = {name: kw.pop(name) for name in trainer_fields}
        try:
            result = Trainer(**trainer_kw).fit(recipe_cls, recipe_cls.Config(**kw))
        except ConfigError as err:
            raise click.ClickException(str(err)) from None
        click.echo(result)

    for option in reversed(options(Trainer) + options(recipe_cls.Config)):
        run = option(run)
    return click.command(recipe_cls.name, help=inspect.getdoc(recipe_cls))(run)


@click.group()
def cli() -> None:
    """Train stylegate's models (resumable: rerun the same command to continue)."""


for _recipe in RECIPES.values():
    cli.add_command(recipe_command(_recipe))


@cli.command()
@click.option("--run", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option(
    "--mapping-only",
    is_flag=True,
    help="replace only the mapping network of OUT's generator by the run's (a generator "
    "sharing the base's latent space, such as the transfer model)",
)
def ship(run: Path, out: Path, mapping_only: bool) -> None:
    """Write a compact fp16 checkpoint from a run's state (adds to OUT if it exists)."""
    try:
        out = ship_run(run, out, mapping_only=mapping_only)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
