"""``perfmodel`` command line: a click group whose subcommands load lazily.

Each subcommand lives in its own module and is imported only when run, so
``perfmodel predict`` never pays for torch, pandas or matplotlib.
"""
from __future__ import annotations

import importlib
import sys

import click

from ..errors import PerfmodelError

#: command name -> "module:attribute" (modules under perfmodel.cli)
COMMANDS = {
    "demo": "demo:demo",
    "models": "catalog:models",
    "hardware": "catalog:hardware",
    "predict": "predict:predict",
    "sweep": "sweep:sweep",
    "calibrate": "calibrate:calibrate",
    "kernels": "kernels:kernels",
    "validate": "validate:validate",
    "steps": "steps:steps",
    "plan": "plan:plan",
    "whatif": "plan:whatif",
    "report": "report:report",
    "diagnose": "diagnose:diagnose",
    "check": "check:check",
}


def _load(name: str):
    mod, attr = COMMANDS[name].split(":")
    try:
        return getattr(importlib.import_module(f"{__name__}.{mod}"), attr)
    except ModuleNotFoundError as e:
        if e.name == f"{__name__}.{mod}":
            return None
        raise


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [n for n in COMMANDS if _load(n) is not None]

    def get_command(self, ctx, name):
        return _load(name) if name in COMMANDS else None

    def invoke(self, ctx):
        """Bad input -> ``error: <message>`` (one line), exit 2; Ctrl-C -> ``interrupted``, exit 130."""
        try:
            return super().invoke(ctx)
        except PerfmodelError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:  # click's usage/help lines folded into one
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            click.echo(f"error: {e.format_message()} (see '{where} -h')", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="perfmodel")
def main():
    """perfmodel: how long will training take, and would a bigger model finish sooner?"""


if __name__ == "__main__":  # pragma: no cover
    main()
