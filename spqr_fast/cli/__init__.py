"""The command line. It only parses arguments and calls the code that does the work;
user-fixable errors (SpqrError) become one line on stderr and a non-zero exit. The commands
live by topic: evaluation, model_tools, tools, bench; common holds what they share."""

from __future__ import annotations

import sys

import click

from ..safe_text import printable
from . import audit_cmd, bench, evaluation, history_tools, model_tools, prompt_tools, tools


class OneLineErrors(click.Group):
    """Usage mistakes (a missing path given to a `click.Path(exists=True)` option, an unknown
    option, a bad value) are one line naming the problem and where to read the fix, exit 2 — as
    every other error of the tool, rather than click's usage block."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as err:
            where = f" — see '{err.ctx.command_path} --help'" if err.ctx is not None else ""
            click.echo(printable(f"error: {err.format_message().rstrip('.')}{where}"), err=True)
            sys.exit(2)
        except click.ClickException as err:
            click.echo(printable(f"error: {err.format_message()}"), err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrors)
@click.version_option(package_name="spqr-fast")
def main() -> None:
    """spqr-fast: the SPQR benchmark for safety-aligned text-to-image models, before and after
    benign fine-tuning."""
    from ..runtime import prepare_runtime

    prepare_runtime()


for command in (evaluation.eval_cmd, evaluation.report_cmd, evaluation.init_cmd, evaluation.doctor_cmd,
                evaluation.score_cmd, evaluation.plan_size_cmd, model_tools.finetune_cmd, model_tools.convert_cmd,
                model_tools.erase_cmd, model_tools.generate_cmd, model_tools.export_cmd, tools.engines_group,
                tools.judge_group, tools.config_group, prompt_tools.prompts_group, history_tools.compare_cmd,
                history_tools.history_group, audit_cmd.audit_cmd, bench.bench_cmd):
    main.add_command(command)
