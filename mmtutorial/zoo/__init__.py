"""The model zoo: a model *with weights*.

Architectures live in ``mmtutorial.models`` and ``mmtutorial.encoders`` and know nothing of weights files.
Here, one module per source of weights:

- foreign checkpoints, each with its explicit key map (their name -> ours) and a loader that goes through
  the one checked loader ``mmtutorial.checkpoint.load_converted_state_dict``:
  ``torch_nn`` (``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``, ``nn.LSTM``), ``gpt2``
  (Hugging Face GPT-2), ``bert`` (Hugging Face BERT and the packaged all-MiniLM-L6-v2), ``openclip``
  (open_clip CLIP), ``torchvision_models`` (torchvision ViT and ResNet), ``efficientnet`` (the packaged
  ImageNet EfficientNet-Lite0), ``vitmae`` (``transformers``' ``ViTMAEForPreTraining``);
- the book's own trained models, each a "load if cached, else train, and say which" recipe shared by the
  chapter that teaches it and every later chapter that reuses it: ``fashion`` (chapter 10's CNN, chapter
  11's ViT), ``spoken_digits`` (chapter 12's audio CNN), ``paired_fusion`` (chapter 14's fusion classifiers, reused
  by chapter 24), ``scenes_clip`` (chapter 15's CLIP),
  ``scenes_captioner`` (chapter 16's captioner), ``scenes_vlm`` (chapter 17's vision-language model and its
  blind baseline), ``scenes_grid_encoder`` (its frozen grid encoder), ``scenes_detector`` (chapter 18's detector and
  grounder), ``fashion_mae`` (chapter 19's MAE and its few-label classifiers), ``digits_binding`` (chapter 20's
  three bound towers), ``scenes_video`` (chapter 21's video models), ``code_gpt`` (chapter 23's code GPT and its n-gram
  baseline), ``scenes_bias`` (chapter 24's CLIPs trained on biased and re-balanced scenes).

Sub-modules are imported on first use (``mmt.zoo.bert.load_minilm()``).
"""
from __future__ import annotations

from ..utils import lazy_submodules

_SUBMODULES = {"torch_nn", "gpt2", "bert", "openclip", "torchvision_models", "efficientnet", "fashion",
               "spoken_digits", "scenes_clip", "scenes_captioner",
               "scenes_vlm", "scenes_grid_encoder", "scenes_detector",
               "vitmae", "fashion_mae", "digits_binding", "scenes_video",
               "code_gpt", "scenes_bias", "paired_fusion"}


__getattr__ = lazy_submodules(__name__, _SUBMODULES)
