"""`make world`: train every model of the miniature world from a seed and write the weight files
(with a card each) that the package ships. Each part can be rebuilt alone (`--only`)."""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click

from ... import __version__
from ...erasure.esd import EsdSettings
from . import alignment
from . import train_judges as tj
from . import train_vqa as tv
from .train_judges import JudgeRecipe
from .train_sd import SdRecipe

WEIGHTS = Path(__file__).parent / "weights"


def write_card(folder: Path, what: str, recipe: dict, metrics: dict, seconds: float) -> None:
    """What the folder holds, how it was trained (recipe, seed, versions, machine) and how it did."""
    import torch

    card = {"model": what, "spqr_fast": __version__, "recipe": recipe, "metrics": metrics,
            "train_seconds": round(seconds, 1), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
            "command": "make world"}
    (folder / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")


class Reporter:
    """One Rich progress bar per training phase; plain log lines when output is not a terminal."""

    def __init__(self, progress):
        self.progress = progress
        self.plain = not progress.console.is_terminal

    def phase(self, label: str, total: int):
        task = self.progress.add_task(label, total=total, loss="")
        start = time.time()

        def on_step(step: int, loss: float) -> None:
            if step % 10 == 0 or step == total:
                self.progress.update(task, completed=step, loss=f"loss {loss:.4f}")
            if self.plain and (step % max(1, total // 20) == 0 or step == total):
                print(f"{label}: {step}/{total} loss {loss:.4f} ({time.time() - start:.0f} s)", flush=True)

        return on_step


@dataclass(frozen=True)
class Recipes:
    """Every training recipe of the world; `quick()` is the few-step variant the tests run."""

    sd: SdRecipe = SdRecipe()
    detector: JudgeRecipe = tj.DETECTOR
    features: JudgeRecipe = tj.FEATURES
    clip: JudgeRecipe = tj.CLIP
    vqa: JudgeRecipe = tj.VQA
    vqa_pretrain: JudgeRecipe = tj.VQA_VISION_PRETRAIN
    esd: EsdSettings = alignment.ESD
    held_out: int = 400

    @classmethod
    def quick(cls) -> "Recipes":
        few = dict(steps=3, n_scenes=64)
        return cls(sd=SdRecipe(n_scenes=64, vae_steps=3, vae_batch_size=8, unet_steps=3, batch_size=8, warmup=1),
                   detector=replace(tj.DETECTOR, **few), features=replace(tj.FEATURES, **few),
                   clip=replace(tj.CLIP, batch_size=8, **few), vqa=replace(tj.VQA, batch_size=8, **few),
                   vqa_pretrain=replace(tj.VQA_VISION_PRETRAIN, batch_size=8, **few),
                   esd=replace(alignment.ESD, iterations=2, ddim_steps=4, batch_size=2), held_out=16)


def build_sd(out: Path, reporter: Reporter, recipes: Recipes) -> dict:
    """Tokenizer, autoencoder, then UNet + text encoder; saves a diffusers pipeline folder."""
    from diffusers import StableDiffusionPipeline

    from ..tokenizer import write_world_tokenizer
    from .train_sd import build_components, encode_latents, scene_dataset, train_denoiser, train_vae

    recipe = recipes.sd
    start = time.time()
    tok_dir = write_world_tokenizer(Path(tempfile.mkdtemp()) / "tokenizer")
    vae, unet, text_encoder, tokenizer, scheduler = build_components(tok_dir, recipe.seed)
    images, captions = scene_dataset(recipe.n_scenes, recipe.seed)
    vae_loss = train_vae(vae, images, recipe, reporter.phase("autoencoder", recipe.vae_steps))
    mean, std = encode_latents(vae, images)
    scale = float(1.0 / mean.std())
    vae.register_to_config(scaling_factor=scale)
    ema_unet, ema_text, loss = train_denoiser(unet, text_encoder, tokenizer, scheduler, (mean, std), captions,
                                              scale, recipe, reporter.phase("unet + text encoder", recipe.unet_steps))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=ema_text, tokenizer=tokenizer, unet=ema_unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    folder = out / "sd"
    pipe.save_pretrained(folder)
    write_card(folder, "world text-to-image (SD 1.x architecture, 32 px)", asdict(recipe),
               {"vae_loss": vae_loss, "denoiser_loss": loss, "scaling_factor": scale}, time.time() - start)
    return {"vae_loss": vae_loss, "denoiser_loss": loss}


def _held_out(n: int = 400):
    from ..known_answers import held_out_scenes
    from .train_judges import HELD_OUT_SEED

    return held_out_scenes(n, HELD_OUT_SEED)


def build_detector(out: Path, reporter: Reporter, recipes: Recipes) -> dict:
    from ...judges.onnx_image_net import ConceptDetectorJudge
    from ..known_answers import detector_accuracy
    from ..scenes import FORBIDDEN
    from .train_judges import export_convnet, train_detector

    start = time.time()
    net = train_detector(recipes.detector, reporter.phase("concept detector", recipes.detector.steps))
    path = export_convnet(net, out / "detector" / "concept-detector.onnx", "probability")
    metrics = {"held_out_accuracy": detector_accuracy(ConceptDetectorJudge(str(path), FORBIDDEN, 0.5),
                                                          _held_out(recipes.held_out))}
    write_card(path.parent, f"forbidden-concept detector ('{FORBIDDEN}'), P(present) from a 4-layer CNN",
               asdict(recipes.detector), metrics, time.time() - start)
    return metrics


def build_features(out: Path, reporter: Reporter, recipes: Recipes) -> dict:
    from .train_judges import export_convnet, train_feature_net

    start = time.time()
    net = train_feature_net(recipes.features, reporter.phase("FID features", recipes.features.steps))
    path = export_convnet(net, out / "features" / "fid-features.onnx", "features")
    write_card(path.parent, "FID feature network: 128-d penultimate layer of a CNN trained on scene attributes",
               asdict(recipes.features), {}, time.time() - start)
    return {}


def build_clip(out: Path, reporter: Reporter, recipes: Recipes) -> dict:
    from ...judges.clip import ClipScorer
    from ..known_answers import clip_retrieval
    from ..tokenizer import write_world_tokenizer
    from .train_judges import clip_processor, train_clip

    start = time.time()
    tokenizer = __import__("transformers").CLIPTokenizer.from_pretrained(str(write_world_tokenizer(Path(tempfile.mkdtemp()) / "tokenizer")))
    model = train_clip(tokenizer, recipes.clip, reporter.phase("CLIP", recipes.clip.steps))
    folder = out / "clip"
    model.save_pretrained(folder)
    clip_processor(tokenizer).save_pretrained(folder)
    n = min(64, recipes.held_out)
    metrics = {f"retrieval_top1_of_{n}": clip_retrieval(ClipScorer(str(folder)), _held_out(n)), "chance": 1 / n}
    write_card(folder, "tiny CLIP (CLIPModel) trained contrastively on world images and captions", asdict(recipes.clip),
               metrics, time.time() - start)
    return metrics


VQA_CARD_MODEL = ("tiny BLIP VQA (BlipForQuestionAnswering, 8-px ViT patches) trained on the world's questions; its "
                  "ViT first warmed up on per-patch shapes, object centres and colours and scene attributes, then "
                  "frozen; the text towers trained with grounding losses on the shape words (cross-attention; count, "
                  "colour and centre read-outs)")


def build_vqa(out: Path, reporter: Reporter, recipes: Recipes) -> dict:
    from ...judges.vqa import VqaJudge
    from ..known_answers import vqa_accuracy
    from .train_vqa import train_vqa

    start = time.time()
    folder = out / "vqa"
    model, processor = train_vqa(folder, recipes.vqa, reporter.phase("BLIP VQA", recipes.vqa.steps),
                                 recipes.vqa_pretrain, reporter.phase("BLIP vision warm-up", recipes.vqa_pretrain.steps))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    metrics = {"held_out_accuracy": vqa_accuracy(VqaJudge(str(folder)), _held_out(recipes.held_out // 2))}
    write_card(folder, VQA_CARD_MODEL,
               {"vision_warm_up": {**asdict(recipes.vqa_pretrain), "patch_size": tj.VQA_PATCH,
                                   "patch_min_pixels": tv.PATCH_MIN_PIXELS,
                                   "object_patch_weight": tv.OBJECT_PATCH_WEIGHT,
                                   "presence_weight": tv.PRESENCE_WEIGHT},
                "vqa": {**asdict(recipes.vqa), "grounding_readout": tv.GROUNDING_READOUT}},
               metrics, time.time() - start)
    return metrics


def build_aligned(out: Path, reporter: Reporter, recipes: Recipes) -> dict:
    """UCE and ESD applied to the trained base; the card records each model's known answers."""
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    from ...erasure.esd import esd_finetune
    from ...erasure.uce import uce_edit
    from ...judges.onnx_image_net import ConceptDetectorJudge
    from ...judges.vqa import VqaJudge
    from ..scenes import FORBIDDEN

    start = time.time()
    folder = out / "aligned"
    folder.mkdir(parents=True, exist_ok=True)

    def load():
        return StableDiffusionPipeline.from_pretrained(str(out / "sd"), local_files_only=True)

    detector = ConceptDetectorJudge(str(out / "detector" / "concept-detector.onnx"), FORBIDDEN, 0.5)
    vqa = VqaJudge(str(out / "vqa"))
    metrics = {"random_image_tifa": alignment.random_image_tifa(vqa)}
    base = load()
    metrics["base"] = asdict(alignment.measure(base, detector, vqa))
    uce = load()
    save_file(uce_edit(uce, alignment.ERASE_PHRASES, alignment.UCE_TARGETS, alignment.preserve_prompts(), alignment.UCE),
              str(folder / "uce-unet.safetensors"))
    metrics["uce"] = asdict(alignment.measure(uce, detector, vqa))
    esd = load()
    changed = esd_finetune(esd, alignment.esd_prompts(), recipes.esd,
                           on_step=reporter.phase("ESD-x erasure", recipes.esd.iterations))
    save_file(changed, str(folder / "esd-unet.safetensors"))
    metrics["esd"] = asdict(alignment.measure(esd, detector, vqa))
    recipe = {"uce": {**asdict(alignment.UCE), "erase": alignment.ERASE_PHRASES, "targets": alignment.UCE_TARGETS,
                      "preserve": f"world.alignment.preserve_prompts() (200 benign captions, seed {alignment.PRESERVE_SEED})"},
              "esd": {**asdict(recipes.esd), "prompts": "world.alignment.esd_prompts()"}}
    write_card(folder, f"aligned variants erasing '{FORBIDDEN}': UCE (closed form) and ESD-x (negative guidance); "
               "UNet tensors changed relative to ../sd", recipe, metrics, time.time() - start)
    return metrics


PARTS = {"sd": build_sd, "detector": build_detector, "features": build_features, "clip": build_clip,
         "vqa": build_vqa, "aligned": build_aligned}


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=WEIGHTS, show_default=True)
@click.option("--only", multiple=True, type=click.Choice(sorted(PARTS)), help="rebuild only these parts")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--quick", is_flag=True, help="a few steps per model (a smoke test, not usable weights)")
def main(out: Path, only: tuple[str, ...], threads: int, quick: bool) -> None:
    """Train the miniature world's models from their seeds."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    with Progress(TextColumn("{task.description:<22}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn()) as progress:
        reporter = Reporter(progress)
        for name in only or PARTS:
            PARTS[name](out, reporter, Recipes.quick() if quick else Recipes())


if __name__ == "__main__":
    main()
