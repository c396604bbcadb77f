"""Chapter 17's small vision-language model on synthetic scenes: recipes for stage 1, stage 2 and the blind
baseline, each "load if cached, else train, and say which".

The vision encoder is, by default, chapter 17's grid encoder (:mod:`scenes_grid_encoder`): a small CNN
pretrained on the scenes' exact per-cell labels (colour, shape and size of the object centred in each cell of
a 4 x 4 grid) and counts, then frozen; its 17 tokens (a summary token and 16 cell tokens, 64-d each) keep what
is where.  ``encoder="clip"`` takes chapter 15's scenes CLIP image tower instead (same token shape; it keeps
colour well but blurs shape and counts).  Frozen, the tokens are read once per scene and cached in memory,
which makes every training step a language-model step only.

* stage 1 (alignment): ``<image> <bos> caption <eos>``, the loss on the caption; LLaVA trains only the
  projector here because its LM is pretrained, ours is trained from scratch so projector and LM both learn;
* stage 2 (visual instruction tuning): ``<image> <bos> question answer <eos>``, the loss on the answer only;
* blind baseline: stage 2 with the image tokens zeroed (the same LM, the same questions, no picture).

Question kinds: the scenes' count, color, shape, position and relation questions, plus *existence*
questions made here from the exact object lists ("is there a red circle?" yes/no, balanced).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..config import get_device, scale
from ..data import scenes
from ..models.vit import ViT
from ..models.vlm import VLM, GridCNN, VLMConfig, conversation_sequences, instruction_sequences
from ..training import History, TrainConfig, fit, load_or_train
from . import scenes_clip, scenes_grid_encoder

__all__ = ["KINDS", "VLMRecipe", "scenes_vlm_recipe", "existence_questions", "sample_questions", "question_conversations",
           "RECIPES", "ENCODERS", "vlm_config", "ScenesVLM", "load_or_train_scenes_vlm", "vqa_accuracy", "answer_questions",
           "answer_loss", "image_dependence"]

KINDS: tuple[str, ...] = ("count", "color", "shape", "position", "relation", "existence")
_PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}


@dataclass
class VLMRecipe:
    """Data sizes and training settings (QUICK mode: fewer scenes and epochs)."""
    train_count: int              # training scenes (a prefix of the "train" split)
    caption_epochs: int           # stage 1 passes over the scenes' captions
    qa_epochs: int                # stage 2 passes over the question-answer pairs
    blind_qa_epochs: int          # the blind baseline's passes: it reaches the best any blind model can do sooner
    per_kind: int = 1             # questions of each kind drawn per training scene (one conversation)
    batch_size: int = 8           # conversations (scenes) per batch: ~50 answers; small, for more steps
    lr: float = 2e-3              # peak of the one-cycle schedule
    encoder_lr: float = 3e-4      # the vision encoder's rate when it is fine-tuned (an ablation)
    weight_decay: float = 0.01
    seed: int = 0
    max_text_len: int = 200       # text positions: a scene's questions as one conversation (about 150 tokens)


RECIPES = ("main", "ablation")


def scenes_vlm_recipe(budget: str = "main") -> VLMRecipe:
    """``"main"`` (the chapter's model and its blind baseline): full 1,000 scenes, 2 caption epochs and 64 QA
    epochs of one question per kind per scene (8,000 steps; the blind baseline 24 epochs), QUICK 150 scenes,
    1 and 3; ``"ablation"`` (the variants compared with each other): full 500 scenes, 1 and 12, QUICK 50
    scenes, 1 and 2.  The number of optimizer steps matters most: the two-step lookups (find the named object,
    then read its position or count) are learnt late and suddenly, after the colour and shape questions, and
    runs with larger or smaller batches at the same compute learnt them less reliably; so the conversations are
    short (six questions) and the batches small (8 scenes).  The blind baseline stops earlier because without
    the image it can learn only the answer priors (the chapter checks it against the best blind lookup table).
    QUICK keeps every code path, not the accuracy."""
    if budget == "main":
        return VLMRecipe(train_count=scale(full=1_000, quick=150), caption_epochs=scale(full=2, quick=1),
                         qa_epochs=scale(full=64, quick=3), blind_qa_epochs=scale(full=24, quick=3))
    if budget == "ablation":
        return VLMRecipe(train_count=scale(full=500, quick=50), caption_epochs=1, qa_epochs=scale(full=12, quick=2),
                         blind_qa_epochs=scale(full=12, quick=2))
    raise ValueError(f"budget must be one of {RECIPES}, got {budget!r}")


def existence_questions(scene: scenes.Scene, rng: np.random.Generator) -> list[scenes.QA]:
    """Balanced "is there a ...?" questions: one about an object in the scene (yes), one about a colour-shape
    pair that is absent (no), with the exact answer from the object list."""
    present = {o.pair for o in scene.objects}
    absent = [pair for pair in scenes.PAIRS if pair not in present]
    yes = sorted(present)[int(rng.integers(len(present)))]
    no = absent[int(rng.integers(len(absent)))]
    return [scenes.QA(f"is there a {c} {s}?", "yes", "existence") for c, s in (yes,)] + \
           [scenes.QA(f"is there a {c} {s}?", "no", "existence") for c, s in (no,)]


def _balanced_counts(options: list[scenes.QA], rng: np.random.Generator) -> list[scenes.QA]:
    """The count questions in the order they are drawn: answer "0" and a non-zero answer alternate, the first
    of the two chosen at random.  A scene has far more absent colours and shapes than present ones (about
    60 % of its count questions answer "0"), so uniform draws would let a blind model score by always saying
    "0"; VQA v2 balances its answers against such priors for the same reason (Goyal et al., 2017)."""
    zero = [options[int(k)] for k in rng.permutation(len(options)) if options[int(k)].answer == "0"]
    some = [options[int(k)] for k in rng.permutation(len(options)) if options[int(k)].answer != "0"]
    first, second = (zero, some) if rng.random() < 0.5 else (some, zero)
    ordered = [qa for pair in zip(first, second) for qa in pair]
    return ordered + first[len(second):] + second[len(first):]


def sample_questions(scene_list: Sequence[scenes.Scene], per_kind: int, seed: int) -> list[tuple[int, scenes.QA]]:
    """(scene index, QA) pairs: up to ``per_kind`` random questions of each kind per scene; existence
    answers are balanced by construction (:func:`existence_questions`) and count answers between "0" and
    non-zero (:func:`_balanced_counts`), so the blind baseline learns priors but cannot live on them."""
    rng = np.random.default_rng(seed)
    examples = []
    for index, scene in enumerate(scene_list):
        by_kind: dict[str, list[scenes.QA]] = {kind: [] for kind in KINDS}
        for qa in scene.questions() + existence_questions(scene, rng):
            by_kind[qa.kind].append(qa)
        for kind in KINDS:
            options = by_kind[kind]
            if kind == "count":
                examples += [(index, qa) for qa in _balanced_counts(options, rng)[:per_kind]]
                continue
            for k in rng.permutation(len(options))[:per_kind]:
                examples.append((index, options[int(k)]))
    return examples


def question_conversations(scene_list: Sequence[scenes.Scene], per_kind: int, seed: int) -> list[list[tuple[str, str]]]:
    """One conversation per scene: its sampled questions (:func:`sample_questions`) in a random order, as
    (question, answer) turns."""
    rng = np.random.default_rng(seed + 1)
    turns: list[list[tuple[str, str]]] = [[] for _ in scene_list]
    for index, qa in sample_questions(scene_list, per_kind, seed):
        turns[index].append((qa.question, qa.answer))
    return [[conversation[int(k)] for k in rng.permutation(len(conversation))] for conversation in turns]


ENCODERS = ("grid", "clip")


def vlm_config(vocab: scenes.Vocabulary, vision, recipe: VLMRecipe, projector: str = "mlp") -> VLMConfig:
    """The tiny VLM: a 2-block GPT of width 64 after the vision encoder's 17 tokens (``vision``: its ViTConfig)."""
    return VLMConfig(vocab_size=len(vocab), max_seq_len=vision.num_tokens + recipe.max_text_len, dim=64,
                     num_layers=2, num_heads=4, vision_dim=vision.dim, num_image_tokens=vision.num_tokens,
                     projector=projector)


@dataclass
class ScenesVLM:
    """A trained scenes VLM with what it needs to read scenes and questions."""
    model: VLM                     # eval mode; holds the image tower as its (frozen or tuned) encoder
    histories: dict[str, History | None]   # "stage1", "stage2" (absent stages are None)
    encoder: "scenes_grid_encoder.ScenesGridEncoder | scenes_clip.ScenesCLIP"   # pixel standardisation, vocabulary
    blind: bool                    # trained (and evaluated) without the image

    def pixels(self, scene_list: Sequence[scenes.Scene]) -> Tensor:
        return self.encoder.pixels(scene_list)                                  # (n, 3, 32, 32)


def _tower(source) -> ViT | GridCNN:
    return source.tower if isinstance(source, scenes_grid_encoder.ScenesGridEncoder) else source.model.visual.vit


def _encoder(source, finetune: bool):
    """A copy of the image tower (fine-tuning must not change the cached encoder)."""
    import copy
    vit = copy.deepcopy(_tower(source))
    vit.train(finetune)                                   # frozen: BatchNorm keeps its running statistics
    vit.requires_grad_(finetune)
    return vit


def load_or_train_scenes_vlm(projector: str = "mlp", stage1: bool = True, finetune_encoder: bool = False,
                             blind: bool = False, budget: str = "main", device=None,
                             progress: bool = True, encoder: str = "grid") -> ScenesVLM:
    """The chapter's VLM (``blind=True``: the text-only baseline), loaded from the cache or trained now.

    ``projector`` "mlp" or "linear"; ``stage1=False`` skips caption alignment; ``finetune_encoder`` trains the
    image tower too (at ``recipe.encoder_lr``).  ``encoder``: "grid" (the default, chapter 17's
    :mod:`scenes_grid_encoder`, pretrained on exact per-cell labels) or "clip" (chapter 15's CLIP image tower).  The blind baseline has no stage 1 (captions without an image
    teach nothing about the scene).  ``budget``: the ``"main"`` recipe or the smaller ``"ablation"`` one.
    """
    if blind:
        stage1 = False                                        # the blind model only ever sees questions
    if projector not in ("linear", "mlp"):
        raise ValueError(f"projector must be 'linear' or 'mlp', got {projector!r}")
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
    recipe, device = scenes_vlm_recipe(budget), torch.device(device) if device is not None else get_device()
    if encoder == "grid":
        source = scenes_grid_encoder.load_or_train_scenes_grid_encoder(device=device, progress=progress)
    else:
        source = scenes_clip.load_or_train_scenes_clip(device=device, progress=progress)
    vocab = source.vocab
    torch.manual_seed(recipe.seed)
    model = VLM(vlm_config(vocab, _tower(source).config, recipe, projector), _encoder(source, finetune_encoder),
                freeze_vision=not finetune_encoder).to(device)
    train_scenes = scenes.generate_scenes(recipe.train_count, split="train", seed=recipe.seed)
    pixels = source.pixels(train_scenes).to(device)                            # (S, 3, 32, 32)
    features = None
    if not finetune_encoder:
        with torch.no_grad():                                                # the frozen encoder, once per scene
            features = torch.cat([model.encode_images(chunk) for chunk in pixels.split(512)])  # (S, 17, 64)

    def loss_fn(network: VLM, batch) -> Tensor:
        index, tokens, targets = batch
        if blind:
            return network(tokens, targets=targets, blind=True)[1]
        if features is not None:
            return network(tokens, image_features=features[index], targets=targets)[1]
        return network(tokens, images=pixels[index], targets=targets)[1]

    def optimizer_for(network: VLM, train_config: TrainConfig):
        groups = [{"params": [p for n, p in network.named_parameters() if not n.startswith("vision.")]}]
        if finetune_encoder:
            groups.append({"params": list(network.vision.parameters()), "lr": recipe.encoder_lr})
        return torch.optim.AdamW(groups, lr=train_config.lr, weight_decay=train_config.weight_decay)

    def stage(network: VLM, conversations, epochs, seed) -> History:
        tokens, targets, _ = conversation_sequences(vocab, conversations, max_len=recipe.max_text_len)
        train_config = TrainConfig(epochs=epochs, batch_size=recipe.batch_size, lr=recipe.lr, schedule="onecycle",
                                   weight_decay=recipe.weight_decay, seed=seed, progress=progress)
        data = (torch.arange(len(train_scenes)), tokens, targets)           # one conversation per scene
        return fit(network, data, config=train_config, loss_fn=loss_fn,
                   optimizer=optimizer_for(network, train_config), device=device)

    histories: dict[str, History | None] = {"stage1": None, "stage2": None}
    variant = {"projector": projector, "finetune_encoder": finetune_encoder, "blind": blind,
               "model": model.config.to_dict(), "recipe": asdict(recipe),
               # the encoder's identity: a retrained or changed encoder must not load VLMs trained on another
               "encoder": ({"grid": asdict(_tower(source).config),
                            "recipe": asdict(scenes_grid_encoder.grid_encoder_recipe())}
                           if encoder == "grid" else scenes_clip.SCENES_CLIP_CACHE_NAME)}
    if stage1:
        def train_stage1(network: VLM) -> History:
            # all of a scene's captions in one sequence, each an empty-prompt turn: one image, many captions
            return stage(network, [[("", caption) for caption in scene.captions()] for scene in train_scenes],
                         recipe.caption_epochs, recipe.seed)
        histories["stage1"] = load_or_train("vlm-scenes-stage1", model, train_stage1, config=variant)

    def train_stage2(network: VLM) -> History:
        return stage(network, question_conversations(train_scenes, recipe.per_kind, recipe.seed),
                     recipe.blind_qa_epochs if blind else recipe.qa_epochs, recipe.seed + 1)
    histories["stage2"] = load_or_train("vlm-scenes-stage2" if not blind else "vlm-scenes-blind", model, train_stage2,
                                        config={**variant, "stage1": stage1})
    return ScenesVLM(model.eval(), histories, source, blind)


def _answer_position_logits(vlm: ScenesVLM, scene_list: Sequence[scenes.Scene],
                            examples: Sequence[tuple[int, scenes.QA]], batch_size: int):
    """For each batch of (scene index, QA) pairs: the token ids (b, T), the positions whose logits predict the
    answer's first token (b,), and those logits (b, vocab), from the image or, for a blind model, without it."""
    model, vocab = vlm.model, vlm.encoder.vocab
    device = next(model.parameters()).device
    pixels = vlm.pixels(scene_list).to(device)                                      # (S, 3, 32, 32)
    tokens, _, starts = instruction_sequences(vocab, [qa.question for _, qa in examples],
                                              [qa.answer for _, qa in examples])
    index = torch.as_tensor([i for i, _ in examples])
    for chunk in torch.arange(len(examples)).split(batch_size):
        ids = tokens[chunk].to(device)
        images = None if vlm.blind else pixels[index[chunk].to(device)]
        logits, _ = model(ids, images=images, blind=vlm.blind)                      # (b, T, vocab)
        positions = starts[chunk].to(device)                                        # (b,)
        yield ids, positions, logits[torch.arange(len(chunk), device=device), positions]   # (b, vocab)


@torch.no_grad()
def answer_questions(vlm: ScenesVLM, scene_list: Sequence[scenes.Scene], examples: Sequence[tuple[int, scenes.QA]],
                     batch_size: int = 512) -> list[str]:
    """The model's one-word answer (argmax at the answer position) to each (scene index, QA) pair."""
    tokens = vlm.encoder.vocab.tokens
    return [tokens[int(k)] for _, _, logits in _answer_position_logits(vlm, scene_list, examples, batch_size)
            for k in logits.argmax(dim=-1)]


def vqa_accuracy(vlm: ScenesVLM, scene_list: Sequence[scenes.Scene], examples: Sequence[tuple[int, scenes.QA]]
                 ) -> dict[str, float]:
    """Accuracy per question kind (and "all") of the model's answers on the given questions."""
    answers = answer_questions(vlm, scene_list, examples)
    right, total = Counter(), Counter()
    for (_, qa), answer in zip(examples, answers):
        total[qa.kind] += 1
        right[qa.kind] += answer == qa.answer
    result = {kind: right[kind] / total[kind] for kind in KINDS if total[kind]}
    result["all"] = sum(right.values()) / max(1, sum(total.values()))
    return result


@torch.no_grad()
def answer_loss(vlm: ScenesVLM, scene_list: Sequence[scenes.Scene], examples: Sequence[tuple[int, scenes.QA]],
                batch_size: int = 512) -> dict[str, float]:
    """Mean cross-entropy (nats) of the true answer's first token per question kind (and "all"): a finer
    measure than accuracy, which moves before the argmax does."""
    losses = [torch.nn.functional.cross_entropy(logits, ids[torch.arange(len(ids), device=ids.device), positions + 1],
                                                reduction="none").cpu()
              for ids, positions, logits in _answer_position_logits(vlm, scene_list, examples, batch_size)]
    losses = torch.cat(losses)
    kinds = [qa.kind for _, qa in examples]
    result = {kind: float(losses[[k == kind for k in kinds]].mean()) for kind in KINDS if kind in kinds}
    result["all"] = float(losses.mean())
    return result


@torch.no_grad()
def image_dependence(vlm: ScenesVLM, scene_list: Sequence[scenes.Scene], examples: Sequence[tuple[int, scenes.QA]],
                     batch_size: int = 512) -> float:
    """How much the answers depend on the picture: the mean total-variation distance between the answer
    distribution (first answer token) given the question's own scene and given the next scene of the list.
    Exactly 0 for a blind model; a model that reads the image moves probability when the picture changes."""
    model, vocab = vlm.model, vlm.encoder.vocab
    if vlm.blind:
        return 0.0
    device = next(model.parameters()).device
    pixels = vlm.pixels(scene_list).to(device)                                      # (S, 3, 32, 32)
    tokens, _, starts = instruction_sequences(vocab, [qa.question for _, qa in examples],
                                              [qa.answer for _, qa in examples])
    index = torch.as_tensor([i for i, _ in examples])
    distances = []
    for chunk in torch.arange(len(examples)).split(batch_size):
        ids, rows = tokens[chunk].to(device), torch.arange(len(chunk), device=device)
        own, other = index[chunk].to(device), (index[chunk].to(device) + 1) % len(scene_list)
        p = [model(ids, images=pixels[which])[0][rows, starts[chunk].to(device)].softmax(-1) for which in (own, other)]
        distances.append(0.5 * (p[0] - p[1]).abs().sum(-1).cpu())                  # (b,)
    return float(torch.cat(distances).mean())
