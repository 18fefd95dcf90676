"""What every command shares: consoles, the one-line error handling, and the options of
commands that load a model or use threads."""

from __future__ import annotations

import errno
import functools
import sys
from pathlib import Path

import click
from rich.console import Console

from ..errors import SpqrError, as_disk_error
from ..safe_text import printable


def stderr_console() -> Console:
    return Console(stderr=True)


def print_table(title: str, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    """A right-aligned Rich table of benchmark rows on stdout."""
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    stdout_console().print(table)


def stdout_console() -> Console:
    """Tables on stdout; when piped, wide enough not to truncate columns."""
    return Console() if sys.stdout.isatty() else Console(width=180)


def friendly_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SpqrError as err:
            click.echo(f"error: {printable(str(err))}", err=True)  # data in a message never steers the terminal
            sys.exit(2)
        except Exception as exc:  # noqa: BLE001 - a full disk or a read-only folder is not a bug
            err = as_disk_error(exc)
            if err is None:
                raise
            where = f" writing '{err.filename}'" if err.filename else ""
            fix = ("free space (or choose another --out) and re-run: finished work is kept and the run resumes"
                   if err.errno in (errno.ENOSPC, errno.EDQUOT) else
                   "fix the permissions (in Docker: --user $(id -u)) or choose another --out, then re-run")
            click.echo(f"error: {err.strerror}{where} — {fix}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished images and records are saved; re-run the same command to resume", err=True)
            sys.exit(130)

    return wrapper


def threads_option(fn):
    """--threads: intra-op CPU threads for PyTorch and ONNX Runtime (recorded in results)."""
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="CPU threads for PyTorch and ONNX Runtime (default: the cores this process may use)")(fn)


def load_average() -> float | None:
    import os

    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def model_options(*, lora: bool = False, required: bool = True):
    """--model, --base, --format, --allow-missing-keys (and --lora) of every command that loads a
    model; the command receives one `source` argument, a checked ModelSource."""
    def decorate(fn):
        @functools.wraps(fn)
        @friendly_errors
        def wrapper(*args, model_path, base, model_format, allow_missing_keys, lora_path=None, **kwargs):
            kwargs["source"] = model_source(model_path, base, model_format, allow_missing_keys, lora_path)
            return fn(*args, **kwargs)

        options = [
            click.option("--model", "model_path", required=required, type=existing_path("any"),
                         help="diffusers folder, single-file checkpoint, or UNet state dict (with --base)"),
            click.option("--base", type=existing_path("dir"), default=None,
                         help="base diffusers folder for a weights file (state dict or single file)"),
            click.option("--format", "model_format", default="auto", show_default=True,
                         type=click.Choice(["auto", "diffusers", "single_file", "unet_state_dict"]),
                         help="how --model is stored (auto: told from its keys)"),
            click.option("--allow-missing-keys", is_flag=True,
                         help="accept a UNet state dict holding only some layers (e.g. cross-attention)"),
        ]
        if lora:
            options.append(click.option("--lora", "lora_path", type=existing_path("dir"), default=None,
                                        help="LoRA folder fused into the UNet first"))
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def model_source(model_path: Path | None, base: Path | None, model_format: str, allow_missing_keys: bool,
                  lora: Path | None):
    """The ModelSource the options describe (None without --model); click checked the paths exist."""
    from ..config import ModelSource

    if model_path is None:
        return None
    return ModelSource(path=str(model_path.resolve()), base=str(base.resolve()) if base else None,
                       format=model_format, allow_missing_keys=allow_missing_keys,
                       lora=str(lora.resolve()) if lora else None)


def existing_path(kind: str) -> click.Path:
    """A path option that must exist ("file", "dir" or "any"); click says which does not."""
    return click.Path(path_type=Path, exists=True, file_okay=kind != "dir", dir_okay=kind != "file")


def prompt_file_options(format_flag: str = "--format"):
    """How to read a prompt file: its format and the column of each role (as the config's prompt
    sets take them). The command receives them as one `prompt_options` dict for `PromptSet`."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, prompt_format, prompt_column, id_column, seed_column, guidance_column,
                    category_column, json_path, has_header, **kwargs):
            kwargs["prompt_options"] = {
                "format": prompt_format, "prompt_column": prompt_column, "id_column": id_column,
                "seed_column": seed_column, "guidance_column": guidance_column, "category_column": category_column,
                "json_path": json_path, "has_header": has_header,
            }
            return fn(*args, **kwargs)

        options = [
            click.option(format_flag, "prompt_format", default="auto", show_default=True,
                         type=click.Choice(["auto", "csv", "i2p", "visu", "jsonl", "json", "txt"]),
                         help="how the prompt file is written (auto: by its extension)"),
            click.option("--prompt-column", default=None, help="column (or JSON key) of the prompt text"),
            click.option("--id-column", default=None, help="column of each prompt's own id"),
            click.option("--seed-column", default=None, help="column of per-prompt seeds"),
            click.option("--guidance-column", default=None, help="column of per-prompt guidance scales"),
            click.option("--category-column", default=None, help="column of categories"),
            click.option("--json-path", default=None, help="JSON: dot-separated keys to the prompt list"),
            click.option("--header/--no-header", "has_header", default=None,
                         help="CSV: whether the first line names the columns (default: detected)"),
        ]
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


class FiniteFloat(click.ParamType):
    """A float option that must be finite and within [low, high] (open at either end where asked):
    NaN and infinities are refused where they enter, with the range in the message."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def _range(self) -> str:
        lo = "-∞" if self.low is None else f"{self.low:g}"
        hi = "∞" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{lo}, {hi}{')' if self.high_open or self.high is None else ']'}"

    def convert(self, value, param, ctx):
        import math

        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"'{value}' is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"'{value}' is not a finite number", param, ctx)
        too_low = self.low is not None and (number <= self.low if self.low_open else number < self.low)
        too_high = self.high is not None and (number >= self.high if self.high_open else number > self.high)
        if too_low or too_high:
            self.fail(f"{number:g} is outside {self._range()}", param, ctx)
        return number
