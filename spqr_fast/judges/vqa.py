"""The VQA judge: a BLIP-VQA model (`BlipForQuestionAnswering`) from a local folder, split into
graphs that are exported through Optimum with custom ONNX configs (Optimum has none for BLIP):

- `vision`: pixel_values → image_embeds (run once per image, reused by every question);
- `answer`: image_embeds + question → logits of the first answer token (yes/no questions);
- `answer_score`: image_embeds + question + answer tokens → the answer's log-likelihood
  (multiple choice: each choice scored, the most likely one picked).

The same three graphs run as torch modules (the reference and the fallback) or on ONNX Runtime,
which must pass a parity check against torch before it is trusted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import JudgeError
from .questions import Question, grade, summarise, yes_probability
from ..schema import BackendReport
from .records import TifaRecord
from .spec import JudgeEnv, JudgeSpec


def _graph_modules():
    import torch
    from torch import nn

    class VisionGraph(nn.Module):
        def __init__(self, blip):
            super().__init__()
            self.vision = blip.vision_model
            self.config = blip.config

        def forward(self, pixel_values):
            return {"image_embeds": self.vision(pixel_values=pixel_values)[0]}

    class _QuestionEncoder(nn.Module):
        def __init__(self, blip):
            super().__init__()
            self.text_encoder = blip.text_encoder
            self.text_decoder = blip.text_decoder
            self.config = blip.config
            self.bos = blip.config.text_config.bos_token_id

        def encode(self, image_embeds, input_ids, attention_mask):
            image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
            return self.text_encoder(input_ids=input_ids, attention_mask=attention_mask,
                                     encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask)[0]

    class AnswerGraph(_QuestionEncoder):
        def forward(self, image_embeds, input_ids, attention_mask):
            q = self.encode(image_embeds, input_ids, attention_mask)
            bos = torch.full((input_ids.shape[0], 1), self.bos, dtype=torch.long, device=input_ids.device)
            logits = self.text_decoder(input_ids=bos, encoder_hidden_states=q, encoder_attention_mask=attention_mask,
                                       return_dict=True).logits
            return {"logits": logits[:, -1, :]}

    class AnswerScoreGraph(_QuestionEncoder):
        def forward(self, image_embeds, input_ids, attention_mask, answer_ids, answer_mask):
            q = self.encode(image_embeds, input_ids, attention_mask)
            logits = self.text_decoder(input_ids=answer_ids, attention_mask=answer_mask, encoder_hidden_states=q,
                                       encoder_attention_mask=attention_mask, return_dict=True).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            token = torch.gather(logp, 2, answer_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            return {"log_likelihood": (token * answer_mask[:, 1:].to(token.dtype)).sum(-1)}

    return VisionGraph, AnswerGraph, AnswerScoreGraph


def _onnx_configs(blip_config):
    """Optimum OnnxConfigs for the three graphs (inputs, outputs, dynamic axes, dummy inputs)."""
    from optimum.exporters.onnx import OnnxConfig
    from optimum.utils import DummyInputGenerator, NormalizedConfig

    vision_cfg = blip_config.vision_config
    text_cfg = blip_config.text_config

    class Dummies(DummyInputGenerator):
        SUPPORTED_INPUT_NAMES = ("pixel_values", "image_embeds", "input_ids", "attention_mask", "answer_ids",
                                 "answer_mask")

        def __init__(self, task, normalized_config, batch_size: int = 2, **kwargs):
            self.batch = batch_size

        def generate(self, input_name, framework="pt", int_dtype="int64", float_dtype="fp32"):
            rng = np.random.default_rng(0)
            n_patches = (vision_cfg.image_size // vision_cfg.patch_size) ** 2 + 1
            shapes = {
                "pixel_values": (self.batch, 3, vision_cfg.image_size, vision_cfg.image_size),
                "image_embeds": (self.batch, n_patches, vision_cfg.hidden_size),
            }
            if input_name in shapes:
                arr = rng.standard_normal(shapes[input_name]).astype(np.float32)
            elif input_name.endswith("mask"):
                arr = np.ones((self.batch, 5 if input_name == "attention_mask" else 3), dtype=np.int64)
            else:
                arr = rng.integers(3, text_cfg.vocab_size, (self.batch, 5 if input_name == "input_ids" else 3))
                arr[:, 0] = text_cfg.bos_token_id
            if framework == "np":
                return arr
            import torch

            return torch.from_numpy(arr)

    base = dict(NORMALIZED_CONFIG_CLASS=NormalizedConfig, DUMMY_INPUT_GENERATOR_CLASSES=(Dummies,))
    seq = {0: "batch_size", 1: "sequence_length"}
    ans = {0: "batch_size", 1: "answer_length"}
    img = {0: "batch_size", 1: "image_tokens"}

    def make(name, inputs, outputs):
        return type(name, (OnnxConfig,), {**base, "inputs": property(lambda self: inputs),
                                           "outputs": property(lambda self: outputs)})

    return {
        "vision": make("BlipVisionOnnxConfig", {"pixel_values": {0: "batch_size"}}, {"image_embeds": img}),
        "answer": make("BlipAnswerOnnxConfig", {"image_embeds": img, "input_ids": seq, "attention_mask": seq},
                       {"logits": {0: "batch_size"}}),
        "answer_score": make("BlipAnswerScoreOnnxConfig",
                             {"image_embeds": img, "input_ids": seq, "attention_mask": seq, "answer_ids": ans,
                              "answer_mask": ans}, {"log_likelihood": {0: "batch_size"}}),
    }


def export_vqa(model_path: str, out: Path) -> None:
    """Export the three graphs through `optimum.exporters.onnx.export_models`."""
    from optimum.exporters.onnx import export_models
    from transformers import BlipForQuestionAnswering

    blip = BlipForQuestionAnswering.from_pretrained(model_path, local_files_only=True).eval()
    Vision, Answer, AnswerScore = _graph_modules()
    configs = _onnx_configs(blip.config)
    models = {name: (module(blip), configs[name](blip.config, task="feature-extraction"))
              for name, module in (("vision", Vision), ("answer", Answer), ("answer_score", AnswerScore))}
    out.mkdir(parents=True, exist_ok=True)
    export_models(models, output_dir=out, output_names=[f"{n}.onnx" for n in models])


class _TorchGraphs:
    def __init__(self, blip, device: str):
        import torch

        Vision, Answer, AnswerScore = _graph_modules()
        self.torch = torch
        self.device = device
        self.vision, self.answer, self.score = (m(blip).eval().to(device) for m in (Vision, Answer, AnswerScore))

    def _run(self, module, out_key, **arrays):
        with self.torch.inference_mode():
            feeds = {k: self.torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
            return module(**feeds)[out_key].float().cpu().numpy()

    def image_embeds(self, pixel_values):
        return self._run(self.vision, "image_embeds", pixel_values=pixel_values)

    def first_token_logits(self, image_embeds, input_ids, attention_mask):
        return self._run(self.answer, "logits", image_embeds=image_embeds, input_ids=input_ids,
                         attention_mask=attention_mask)

    def answer_loglik(self, image_embeds, input_ids, attention_mask, answer_ids, answer_mask):
        return self._run(self.score, "log_likelihood", image_embeds=image_embeds, input_ids=input_ids,
                         attention_mask=attention_mask, answer_ids=answer_ids, answer_mask=answer_mask)


class _OrtGraphs:
    def __init__(self, folder: Path, providers: list[str], threads: int | None = None):
        from ..backends.ort_backend import OrtSession

        self.sessions = {n: OrtSession(folder / f"{n}.onnx", providers, threads).session
                         for n in ("vision", "answer", "answer_score")}
        self.providers = self.sessions["vision"].get_providers()

    def image_embeds(self, pixel_values):
        return self.sessions["vision"].run(None, {"pixel_values": pixel_values})[0]

    def first_token_logits(self, image_embeds, input_ids, attention_mask):
        return self.sessions["answer"].run(None, {"image_embeds": image_embeds, "input_ids": input_ids,
                                                  "attention_mask": attention_mask})[0]

    def answer_loglik(self, image_embeds, input_ids, attention_mask, answer_ids, answer_mask):
        return self.sessions["answer_score"].run(None, {
            "image_embeds": image_embeds, "input_ids": input_ids, "attention_mask": attention_mask,
            "answer_ids": answer_ids, "answer_mask": answer_mask})[0]


class VqaJudge:
    """Answers TIFA-style questions about images; ONNX Runtime when it passes parity, else torch."""

    name = "vqa"

    def __init__(self, path: str, *, device: str = "cpu", resolver=None, tolerance: float = 1e-3,
                 batch_size: int = 16):
        """`resolver` (a `backends.resolve.BackendResolver`) may move the graphs to ONNX Runtime;
        without one they stay on torch."""
        from transformers import BlipForQuestionAnswering, BlipProcessor

        self.path = path
        self.batch_size = batch_size
        try:
            self.processor = BlipProcessor.from_pretrained(path, local_files_only=True)
            blip = BlipForQuestionAnswering.from_pretrained(path, local_files_only=True).eval()
        except (OSError, ValueError) as err:
            raise JudgeError(f"cannot load the VQA judge from '{path}': {str(err).splitlines()[0]} — "
                             "give a local BlipForQuestionAnswering folder") from None
        tok = self.processor.tokenizer
        self.yes_id, self.no_id = (tok.convert_tokens_to_ids(w) for w in ("yes", "no"))
        if tok.unk_token_id in (self.yes_id, self.no_id):
            raise JudgeError(f"the VQA tokenizer in '{path}' has no single tokens for 'yes'/'no'")
        self.bos_id = blip.config.text_config.bos_token_id
        self.sep_id = tok.sep_token_id
        self.graphs = _TorchGraphs(blip, device)

        self.backend_report = BackendReport(requested="torch", chosen="torch")
        if resolver is None:
            return
        from ..export.onnx_export import _version

        def build(providers: list[str]):
            inputs = {"weights": resolver.hasher.tree(Path(self.path)), "component": "blip-vqa", "graphs": 3,
                      "optimum": _version("optimum-onnx"), "onnx": _version("onnx"), "torch": _version("torch")}
            folder = resolver.cache.get_or_build(
                "onnx-vqa", inputs, lambda tmp: export_vqa(self.path, tmp) or {"model": str(self.path)},
                label="VQA artefact", log=resolver.log)
            return _OrtGraphs(folder, providers, resolver.threads)

        graphs, self.backend_report = resolver.resolve_judge("VQA judge", build, self.parity_error, tolerance)
        if graphs is not None:
            self.graphs = graphs

    def parity_error(self, candidate) -> float:
        """Max relative error of the candidate's three graphs against torch on probe inputs."""
        rng = np.random.default_rng(0)
        size = self.processor.image_processor.size["height"]
        pixels = self.processor(images=[rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2)],
                                return_tensors="np")["pixel_values"].astype(np.float32)
        q = self._tokenize(["is there a red bus?", "how many cats are there?"])
        a_ids, a_mask = self._answer_tokens(["yes", "two"])
        ref, cand = self.graphs, candidate
        errs = []
        emb_ref = ref.image_embeds(pixels)
        emb = cand.image_embeds(pixels)
        errs.append(np.abs(emb - emb_ref).max() / max(1.0, np.abs(emb_ref).max()))
        for fn, args in (("first_token_logits", (emb_ref, *q)), ("answer_loglik", (emb_ref, *q, a_ids, a_mask))):
            r, c = getattr(ref, fn)(*args), getattr(cand, fn)(*args)
            errs.append(np.abs(c - r).max() / max(1.0, np.abs(r).max()))
        return float(max(errs))

    # ---- scoring -----------------------------------------------------------------------------
    def _tokenize(self, texts: list[str]):
        tok = self.processor.tokenizer(texts, padding=True, return_tensors="np")
        return tok["input_ids"].astype(np.int64), tok["attention_mask"].astype(np.int64)

    def _answer_tokens(self, answers: list[str]):
        tok = self.processor.tokenizer
        seqs = [[self.bos_id] + tok(a, add_special_tokens=False)["input_ids"] + [self.sep_id] for a in answers]
        width = max(map(len, seqs))
        ids = np.full((len(seqs), width), tok.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
            mask[i, :len(s)] = 1
        return ids, mask

    def image_embeddings(self, images: list[np.ndarray]) -> np.ndarray:
        out = []
        for s in range(0, len(images), self.batch_size):
            pixels = self.processor(images=list(images[s:s + self.batch_size]), return_tensors="np")["pixel_values"]
            out.append(self.graphs.image_embeds(pixels.astype(np.float32)))
        return np.concatenate(out)

    def answer(self, image_embeds: np.ndarray, questions: list[Question]) -> list[dict]:
        """Grade every question about one image (its embeddings computed once)."""
        graded = [None] * len(questions)
        yes_no = [i for i, q in enumerate(questions) if q.is_yes_no]
        if yes_no:
            ids, mask = self._tokenize([questions[i].question for i in yes_no])
            emb = np.repeat(image_embeds[None], len(yes_no), axis=0)
            logits = self.graphs.first_token_logits(emb, ids, mask).astype(np.float64)
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            for k, i in enumerate(yes_no):
                graded[i] = grade(questions[i], p_yes=yes_probability(probs[k, self.yes_id], probs[k, self.no_id]))
        for i, q in enumerate(questions):
            if q.is_yes_no:
                continue
            ids, mask = self._tokenize([q.question] * len(q.choices))
            a_ids, a_mask = self._answer_tokens(list(q.choices))
            emb = np.repeat(image_embeds[None], len(q.choices), axis=0)
            graded[i] = grade(q, choice_loglik=list(self.graphs.answer_loglik(emb, ids, mask, a_ids, a_mask)))
        return graded

    def judge_image(self, image_embeds: np.ndarray, questions: list[Question],
                    mismatched: list[Question] | None = None) -> dict:
        """The per-image record: graded answers, summary, and the yes-bias control."""
        graded = self.answer(image_embeds, questions)
        record = {"answers": [{"question_index": q.index, "element_type": q.element_type, **g}
                              for q, g in zip(questions, graded)], **summarise(list(zip(questions, graded)))}
        control = [q for q in (mismatched or []) if q.is_yes_no]
        if control:
            answers = self.answer(image_embeds, control)
            record["mismatched_yes_rate"] = float(np.mean([a["predicted"] == "yes" for a in answers]))
            record["mismatched_n"] = len(control)
        return record


class TifaJudge:
    """The VQA judge with its question file: each utility image answers the questions of its
    caption, plus (the yes-bias control) the yes/no questions of another caption."""

    def __init__(self, vqa: VqaJudge, questions_path: str):
        from .questions import by_caption, load_questions, mismatched_pairs

        self.vqa = vqa
        questions, _ = load_questions(questions_path)
        self.groups = by_caption(questions)
        self.swap = mismatched_pairs(list(self.groups))

    @property
    def batch_size(self) -> int:
        return self.vqa.batch_size

    @property
    def backend_report(self) -> BackendReport:
        return self.vqa.backend_report

    def judge(self, images: list[np.ndarray], captions: list[str]) -> list[TifaRecord]:
        embeds = self.vqa.image_embeddings(images)
        return [TifaRecord.model_validate(self.vqa.judge_image(
                    emb, self.groups.get(caption, []), self.groups.get(self.swap.get(caption), [])))
                for emb, caption in zip(embeds, captions)]


def identity(c, hasher) -> dict:
    """What determines the TIFA records (`c`: `judges.vqa`): weights, grading rule, questions."""
    return {"judge": "vqa", "weights_sha256": hasher.tree(Path(c.path)),
            "yes_no": "P(yes)/(P(yes)+P(no)) on the first answer token",
            "multiple_choice": "max sum log-likelihood of the choice tokens",
            "questions_sha256": hasher.file(Path(c.questions))}


def build(c, env: JudgeEnv) -> TifaJudge:
    return TifaJudge(VqaJudge(c.path, device=env.device, resolver=env.resolver, batch_size=env.batch(c.batch_size)),
                     c.questions)


SPEC = JudgeSpec("vqa", "tifa", TifaRecord, identity, build, resolves_backend=True)
