"""The ``stylegate`` command: one entry point, subcommands loaded lazily so that the
client and serving commands never import torch (only ``export`` and ``train`` do)."""

from __future__ import annotations

import importlib

import click

# subcommand -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "serve": "stylegate.service.cli:serve",
    "generate": "stylegate.service.cli:generate",
    "invert": "stylegate.service.cli:invert",
    "edit": "stylegate.service.cli:edit",
    "mix": "stylegate.service.cli:mix",
    "interpolate": "stylegate.service.cli:interpolate",
    "batch": "stylegate.service.cli:batch",
    "directions": "stylegate.service.cli:directions",
    "reload": "stylegate.service.cli:reload",
    "loadtest": "stylegate.service.loadtest:loadtest",
    "export": "stylegate.export.cli:export",
    "triton": "stylegate.ops.triton_local:triton",
    "train": "stylegate.gan.train.user_cli:train",
    "ui": "stylegate.ui.app:ui",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as err:  # e.g. `export` in the serving image, which has no torch
            missing = err.name or str(err)

            @click.command(name=name, help=f"(unavailable here: needs {missing})")
            def unavailable() -> None:
                raise click.ClickException(
                    f"'stylegate {name}' needs {missing}, which is not installed here "
                    "(the training/export extra: pip install 'stylegate[train]')"
                )

            return unavailable


@click.command(cls=LazyGroup)
@click.version_option(package_name="stylegate")
def main() -> None:
    """stylegate: serve StyleGAN generators over gRPC (generation, inversion, editing)."""


if __name__ == "__main__":
    main()
