"""The evaluation as a list of stages. Each stage is a function `(context, stores) -> stores`:
it reads what earlier stages stored and returns the stores with its own part filled in. On disk
the same holds: images, per-image records and BFT results are stored by key, so each stage skips
what already exists and a killed run resumes where it stopped.

    inputs → finetune → plan → generate → judge → measure → score → report

A shard run (`--shard i/n`) is the same list with the plan cut to its slice and the last three
stages replaced by writing the shard's manifest. Where the generate and judge stages run (this
process, or Ray actors) is the executor's business (`context.Executor`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from rich.markup import escape

from .context import RunContext, Stores
from .errors import SpqrError
from .measure import measure_cohort
from .plan import build_plan, plan_stages, sampler_settings
from .prompts import distinct_ids, list_reference_images, load_prompt_set


StageFn = Callable[[RunContext, Stores], Stores]


def read_inputs(ctx: RunContext, stores: Stores) -> Stores:
    """The prompt sets (utility ids made distinct from harmful ones) and the reference images."""
    p = ctx.cfg.prompts
    warn = lambda m: ctx.console.print(f"[yellow]warning[/]: {escape(m)}")  # noqa: E731
    harmful = load_prompt_set(p.harmful, warn, id_prefix="h")
    prompt_sets = {"harmful": harmful,
                   "utility": distinct_ids(harmful, load_prompt_set(p.utility, warn, id_prefix="u"), warn)}
    return replace(stores, prompt_sets=prompt_sets, ref_paths=list_reference_images(p.reference_images))


def finetune(ctx: RunContext, stores: Stores) -> Stores:
    """Each configured benign fine-tuning, trained or found in the BFT cache by its key."""
    from .finetune.stage import finetune_models

    fine_tuned, cards = finetune_models(ctx.cfg, ctx.out, ctx.hasher, ctx.console,
                                        allow_training=not ctx.require_complete)
    return replace(stores, fine_tuned=fine_tuned, bft_cards=cards)


def plan(ctx: RunContext, stores: Stores) -> Stores:
    """The model stages and every image to generate. Utility prompts feed CLIPScore and FID
    (before BFT only) and, with a VQA judge, TIFA before and after BFT."""
    cfg = ctx.cfg
    stages = plan_stages(cfg, ctx.hasher, stores.fine_tuned)
    common = dict(run_seed=cfg.seed, samples_per_prompt=cfg.generation.samples_per_prompt,
                  sampler_settings=sampler_settings(cfg.generation, cfg.backend.kind, ctx.device),
                  use_file_seeds={"harmful": cfg.prompts.harmful.use_file_seeds})
    sets = stores.prompt_sets
    after_sets = sets if cfg.judges.vqa is not None else {"harmful": sets["harmful"]}
    items = (build_plan([s for s in stages if s.stage == "before"], sets, **common)
             + build_plan([s for s in stages if s.stage == "after"], after_sets, **common))
    ctx.console.print(f"[bold]plan[/]: {len(stages)} model stages, {len(items)} images "
                      f"({len(sets['harmful'])} harmful, {len(sets['utility'])} utility prompts), device {ctx.device}")
    if ctx.require_complete:
        missing = [it for it in items if not ctx.images.has(it.key)]
        if missing:
            raise SpqrError(f"{len(missing)} images of the plan are in no shard (e.g. {missing[0].model} "
                            f"[{missing[0].stage}] {missing[0].prompt.id}) — re-run that shard")
    work = items
    if ctx.shard is not None:
        from .distributed.shards import shard_slice

        work = shard_slice(items, *ctx.shard)
        ctx.console.print(f"shard {ctx.shard[0]}/{ctx.shard[1]}: {len(work)} of {len(items)} images")
    return replace(stores, stages=stages, items=items, work=work)


def generate(ctx: RunContext, stores: Stores) -> Stores:
    """Every missing image of this run's work, on the executor."""
    return replace(stores, load_reports=ctx.executor.generate(ctx, stores.stages, stores.work))


def judge(ctx: RunContext, stores: Stores) -> Stores:
    """Every judge over the images without a record, on the executor."""
    return replace(stores, judged=ctx.executor.judge(ctx, stores.work, stores.ref_paths))


def measure(ctx: RunContext, stores: Stores) -> Stores:
    """Stored records → each model's measurements and the per-image records (pure)."""
    assert stores.judged is not None
    return replace(stores, measured=measure_cohort(ctx.cfg, stores.items, stores.prompt_sets, stores.judged))


def score(ctx: RunContext, stores: Stores) -> Stores:
    """Measurements → the leaderboard rows, their confidence, and the run's provenance."""
    from .results import assemble_results

    return replace(stores, results=assemble_results(ctx, stores))


def report(ctx: RunContext, stores: Stores) -> Stores:
    """results.json, the per-image records, the tables and the HTML report."""
    from .report.writers import write_outputs

    assert stores.measured is not None and stores.results is not None
    write_outputs(stores.results, stores.measured.per_image, ctx.images, ctx.cfg, ctx.out)
    return stores


def write_shard(ctx: RunContext, stores: Stores) -> Stores:
    """A shard ends with its manifest (written last; `report --merge` checks it)."""
    from .distributed.shards import write_manifest

    assert ctx.shard is not None
    write_manifest(ctx.out, ctx.cfg, ctx.shard[0], ctx.shard[1], len(stores.work))
    ctx.console.print(f"shard {ctx.shard[0]}/{ctx.shard[1]} done — merge with `spqr-fast report --merge DIR...`")
    return stores


EVALUATION: tuple[StageFn, ...] = (read_inputs, finetune, plan, generate, judge, measure, score, report)
SHARD: tuple[StageFn, ...] = (read_inputs, finetune, plan, generate, judge, write_shard)


def run_stages(ctx: RunContext, stages: Sequence[StageFn], stores: Stores | None = None) -> Stores:
    stores = stores or Stores()
    for stage in stages:
        stores = stage(ctx, stores)
    return stores
