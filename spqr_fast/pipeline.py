"""The evaluation as a list of steps. Each step is a function `(context, state) -> state`: it
reads what earlier steps handed on and returns the state with its own part filled in. On disk the
same holds: images, per-image records and BFT results are stored by key, so each step skips what
already exists and a killed run resumes where it stopped.

    read_inputs → finetune → plan → generate → judge → measure → score → report

A shard run (`--shard i/n`) is the same list with the plan cut to its slice and the last three
steps replaced by writing the shard's manifest. Where the generate and judge steps run (this
process, or Ray actors) is the executor's business (`context.Executor`). ("Stage" is kept for
the domain's: a model before or after benign fine-tuning, `plan.Stage`.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace


from .context import RunContext, RunState
from .errors import SpqrError
from .measure import measure_cohort
from .plan import plan_cohort, plan_stages, sampler_settings
from .prompts import distinct_ids, list_reference_images, load_prompt_set
from .safe_text import shown


Step = Callable[[RunContext, RunState], RunState]


def read_inputs(ctx: RunContext, state: RunState) -> RunState:
    """The prompt sets (utility ids made distinct from harmful ones) and the reference images."""
    p = ctx.cfg.prompts
    warn = lambda m: ctx.console.print(f"[yellow]warning[/]: {shown(m)}")  # noqa: E731
    harmful = load_prompt_set(p.harmful, warn, id_prefix="h")
    prompt_sets = {"harmful": harmful,
                   "utility": distinct_ids(harmful, load_prompt_set(p.utility, warn, id_prefix="u"), warn)}
    if ctx.cfg.judges.vqa is not None:
        check_questions_cover(ctx.cfg.judges.vqa.questions, prompt_sets["utility"], warn)
    return replace(state, prompt_sets=prompt_sets, ref_paths=list_reference_images(p.reference_images))


def check_questions_cover(questions_path: str, utility: list, warn) -> None:
    """TIFA grades a utility image by the questions written for its prompt's caption: a questions
    file matching no utility prompt would leave TIFA undefined for every model, silently."""
    from .errors import InputError
    from .judges.questions import by_caption, load_questions

    captions = set(by_caption(load_questions(questions_path)[0]))
    covered = sum(p.text in captions for p in utility)
    if covered == 0:
        example = next(iter(sorted(captions)), "")
        raise InputError(f"questions file '{questions_path}': none of its {len(captions)} captions is a utility prompt "
                         f"(e.g. caption '{example[:60]}' vs prompt '{utility[0].text[:60] if utility else ''}') — "
                         "write the questions for the utility prompts, or point judges.vqa.questions at their file")
    if covered < len(utility):
        warn(f"questions file '{questions_path}': {len(utility) - covered} of {len(utility)} utility prompts have no "
             "questions; their images get no TIFA score")


def finetune(ctx: RunContext, state: RunState) -> RunState:
    """Each configured benign fine-tuning, trained or found in the BFT cache by its key."""
    from .finetune.stage import finetune_models

    fine_tuned, cards = finetune_models(ctx.cfg, ctx.out, ctx.hasher, ctx.console,
                                        allow_training=not ctx.require_complete)
    return replace(state, fine_tuned=fine_tuned, bft_cards=cards)


def plan(ctx: RunContext, state: RunState) -> RunState:
    """The model stages and every image to generate. Utility prompts feed CLIPScore and FID
    (before BFT only) and, with a VQA judge, TIFA before and after BFT."""
    cfg = ctx.cfg
    stages = plan_stages(cfg, ctx.hasher, state.fine_tuned)
    common = dict(run_seed=cfg.seed, samples_per_prompt=cfg.generation.samples_per_prompt,
                  sampler_settings=sampler_settings(cfg.generation, cfg.backend.kind, ctx.device),
                  use_file_seeds={"harmful": cfg.prompts.harmful.use_file_seeds})
    sets = state.prompt_sets
    items = plan_cohort(stages, sets, tifa_after=cfg.judges.vqa is not None, **common)
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
    return replace(state, stages=stages, items=items, work=work)


def generate(ctx: RunContext, state: RunState) -> RunState:
    """Every missing image of this run's work, on the executor."""
    return replace(state, load_reports=ctx.executor.generate(ctx, state.stages, state.work))


def judge(ctx: RunContext, state: RunState) -> RunState:
    """Every judge over the images without a record, on the executor."""
    return replace(state, judged=ctx.executor.judge(ctx, state.work, state.ref_paths))


def measure(ctx: RunContext, state: RunState) -> RunState:
    """Stored records → each model's measurements and the per-image records (pure)."""
    assert state.judged is not None
    return replace(state, measured=measure_cohort(ctx.cfg, state.items, state.prompt_sets, state.judged))


def score(ctx: RunContext, state: RunState) -> RunState:
    """Measurements → the leaderboard rows, their confidence, and the run's provenance."""
    from .results import assemble_results
    from .runtime import blas_threads

    with blas_threads(ctx.threads.blas):
        return replace(state, results=assemble_results(ctx, state))


def report(ctx: RunContext, state: RunState) -> RunState:
    """results.json, the per-image records, the tables and the HTML report."""
    from .report.writers import write_outputs

    assert state.measured is not None and state.results is not None
    write_outputs(state.results, state.measured.per_image, ctx.images, ctx.cfg, ctx.out)
    return state


def write_shard(ctx: RunContext, state: RunState) -> RunState:
    """A shard ends with its manifest (written last; `report --merge` checks it)."""
    from .distributed.shards import write_manifest

    assert ctx.shard is not None
    write_manifest(ctx.out, ctx.cfg, ctx.shard[0], ctx.shard[1], len(state.work))
    ctx.console.print(f"shard {ctx.shard[0]}/{ctx.shard[1]} done — merge with `spqr-fast report --merge DIR...`")
    return state


EVALUATION: tuple[Step, ...] = (read_inputs, finetune, plan, generate, judge, measure, score, report)
SHARD: tuple[Step, ...] = (read_inputs, finetune, plan, generate, judge, write_shard)


def run_steps(ctx: RunContext, steps: Sequence[Step], state: RunState | None = None) -> RunState:
    state = state or RunState()
    for step in steps:
        state = step(ctx, state)
    return state
