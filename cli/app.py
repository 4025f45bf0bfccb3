"""The `sadh-cli` Typer application: one module per command, imported lazily so --help stays fast."""
from __future__ import annotations

import os
import signal
import sys
from importlib import metadata
from typing import Optional

import typer
from typer.core import TyperGroup

from ..sdk.errors import SadhError
from ..sdk.printable import printable
from ..train.progress import close_open_bars
from . import bench_cmd, data_cmd, encode_cmd, eval_cmd, export_cmd, index_cmd, pipeline_cmd, search_cmd, train_cmd
from . import is_main_process
from .options import library_warnings_shown

NEXT_AFTER_INTERRUPT = "files written so far are complete; re-run the command to finish"


class _Group(TyperGroup):
    """The root command group: Ctrl-C in a command prints one line and exits 130 (click would exit silently);
    under `torchrun` only rank 0 prints it, every rank exits 130.

    A command can name what to do next instead of NEXT_AFTER_INTERRUPT by raising KeyboardInterrupt(next_step)."""

    def invoke(self, ctx: typer.Context) -> None:
        """Run the command; a KeyboardInterrupt becomes "interrupted; NEXT STEP" on stderr (rank 0) and exit code 130.
        What a command returns is dropped: only typer.Exit sets the exit code. The library's logged warnings are shown
        as `warning: ...` lines meanwhile."""
        try:
            with library_warnings_shown():
                super().invoke(ctx)
        except KeyboardInterrupt as e:
            fresh_line = _clear_progress_bars()
            if is_main_process():
                typer.secho(f"{fresh_line}interrupted; {printable(str(e) or NEXT_AFTER_INTERRUPT)}", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(130) from None


def _clear_progress_bars() -> str:
    """Close the progress bars a Ctrl-C left open and return what starts the interrupt line on a line of its own.

    A Ctrl-C can strike while a bar is being drawn or closed, leaving the bar's text without a line end. On a terminal
    the line is erased; in a log, once any bar was made, the message goes on the next line."""
    made = close_open_bars()
    if sys.stderr.isatty():
        return "\r\x1b[K"
    return "\n" if made else ""


app = typer.Typer(
    name="sadh-cli",
    cls=_Group,
    help="SADH deep hashing: train, export (ONNX / FP16 / INT8 / TensorRT), index, search and evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # Click's plain help: wraps the help text; rich panels cut option names at 80 columns
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sadh {metadata.version('sadh')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """SADH deep hashing from training to an edge camera."""


for module in (pipeline_cmd, data_cmd, train_cmd, export_cmd, encode_cmd, index_cmd, search_cmd, eval_cmd, bench_cmd):
    module.register(app)


def reports_errors() -> bool:
    """Whether this process prints its error: rank 0 always; under torchrun the other ranks only once they joined the
    process group (before that every rank reads the same command line and data, so rank 0 says it for all)."""
    if is_main_process():
        return True
    from ..train.distributed import joined_group  # torch: already imported by a rank that could have joined a group

    return joined_group()


def _show(error: typer.TyperException) -> None:
    """Print a command-line error as click does, but a refused or missing value (an unknown choice, a number out of
    range) in one line, as other bad input; a group's help (asked for by giving no command) goes to stdout."""
    ctx = getattr(error, "ctx", None)
    # by name: typer exports no NoArgsIsHelpError (its click is vendored, private: typer._click), only TyperException
    if type(error).__name__ == "NoArgsIsHelpError" and ctx is not None:
        typer.echo(ctx.get_help())
    elif isinstance(error, typer.BadParameter):
        typer.secho(f"error: {error.format_message()}", fg=typer.colors.RED, err=True)
    elif hasattr(error, "show"):
        error.show()
    else:
        typer.echo(f"Error: {printable(error.format_message())}", err=True)


def main() -> None:
    """Entry point of the `sadh-cli` console script: user errors print one line and exit with code 2; a SIGTERM (what
    torchrun and job schedulers send) stops a command as Ctrl-C does, with its line, exit code 130 and clean files."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code = app(standalone_mode=False)
    except SadhError as e:
        if reports_errors():
            rank = "" if is_main_process() else f"[rank {os.environ.get('RANK', '?')}] "
            typer.secho(f"{rank}error: {printable(e)}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except typer.TyperException as e:  # a bad command line, as click reports it (once under torchrun)
        if is_main_process():
            _show(e)
        sys.exit(e.exit_code)
    except typer.Abort:  # end of input at a prompt
        if is_main_process():
            sys.stderr.write("Aborted!\n")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
