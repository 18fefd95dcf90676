"""The command line. It only parses arguments and calls the code that does the work;
user-fixable errors (SpqrError) become one line on stderr and a non-zero exit. The commands
live by topic: evaluation, model_tools, tools, bench; common holds what they share."""

from __future__ import annotations

import click

from . import bench, evaluation, model_tools, tools


@click.group()
@click.version_option(package_name="spqr-fast")
def main() -> None:
    """spqr-fast: the SPQR benchmark for safety-aligned text-to-image models, before and after
    benign fine-tuning."""
    from ..runtime import prepare_runtime

    prepare_runtime()


for command in (evaluation.eval_cmd, evaluation.report_cmd, evaluation.init_cmd, evaluation.doctor_cmd,
                evaluation.score_cmd, evaluation.plan_size_cmd, model_tools.finetune_cmd, model_tools.convert_cmd,
                model_tools.erase_cmd, model_tools.generate_cmd, model_tools.export_cmd, tools.engines_group,
                tools.judge_group, bench.bench_cmd):
    main.add_command(command)
