"""mmtutorial: the companion package of "Multimodal Large Models: Principles and Practice".

Notebooks build each idea from scratch to teach it, then use the tested version kept here.
Sub-modules (``mmt.training``, ``mmt.data``, ``mmt.metrics``, ...) are imported on first use so that
``import mmtutorial as mmt`` stays fast.

Layers
------
Lowest first.  A module imports only from its own layer or a lower one, imports inside functions
included, and no two modules import each other (``tests/test_architecture.py`` parses every module and
enforces both).  This table is the one place the layers are written down; the test reads it.

    layer  modules                                           what belongs there
    0      config utils checkpoint checks                    ground: mode, cache, device, seeding, atomic checked checkpoints, input validators
    1      data scratch tokenizers training metrics retrieval  no model: raw offline data, NumPy from scratch, tokenisers, fit(), metrics
    1      compression interpret privacy sandbox             no model: int8 quantisation and pruning, Grad-CAM, DP-SGD, the code sandbox
    2      nn                                                torch building blocks: attention, Transformer blocks, positions, fusion layers, conv blocks
    3      encoders                                          one file per modality: architectures and from-scratch transforms, no weights files
    4      models                                            complete architectures, one readable file each: no weights files, no training
    5      zoo                                               a model with weights: every foreign key map and loader, every load-or-train recipe
    6      viz widgets exercises doctor assignments __main__  the book-facing top (viz never imports widgets)

Where a new model goes: its architecture is one file in ``models/`` (built from ``nn`` and ``encoders``,
configured with the shared vocabulary below); loading foreign weights into it, or training and caching
it for later chapters, is one module in ``zoo/`` that goes through ``checkpoint.load_converted_state_dict``.

One config vocabulary for every model config: ``vocab_size``, ``max_seq_len``, ``dim``, ``num_layers``,
``num_heads``, ``mlp_ratio``, ``dropout``, ``bias`` (a config adds its own fields only for what these do not
name, e.g. ``patch_size``).
"""
from __future__ import annotations

from .config import cache_dir, describe_run, get_device, is_quick, mode_name, scale
from .utils import Timer, count_parameters, lazy_submodules, seed_everything

__version__ = "0.1.0"

_SUBMODULES = {"checkpoint", "checks", "data", "doctor", "exercises", "metrics", "models", "nn", "encoders",
               "scratch", "tokenizers", "retrieval", "widgets", "training", "viz", "zoo",
               "compression", "interpret", "privacy", "sandbox"}


__getattr__ = lazy_submodules(__name__, _SUBMODULES)


__all__ = ["cache_dir", "describe_run", "get_device", "is_quick", "mode_name", "scale", "Timer",
           "count_parameters", "seed_everything", *sorted(_SUBMODULES)]
