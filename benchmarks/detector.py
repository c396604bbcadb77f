"""Time one training step of our YOLOS-style detector against transformers' YolosForObjectDetection.

    python benchmarks/detector.py                          # CPU, the chapter's tiny config
    python benchmarks/detector.py --threads 1 --reps 30    # steadier numbers on a shared machine
    python benchmarks/detector.py --device cuda --batch 256

Both models get the same tiny configuration (32 px RGB, 8 px patches, 6 detection tokens, 4 blocks of width 64,
4 heads, MLP 128, 24 classes), random initialisation (built offline), the same images and targets. A step is:
forward, DETR's Hungarian set-prediction loss (ours: ``models.detector.set_prediction_loss``; theirs: the loss
``YolosForObjectDetection`` computes from ``labels``), backward, AdamW step. The candidates run in alternation
(a, b, a, b, ...) in one process, so load from other processes slows both alike; the median of ``--reps`` steps
after ``--warmup`` is reported with the ratio ours / transformers (target <= 1.05).
"""
from __future__ import annotations

import torch
from transformers import YolosConfig, YolosForObjectDetection

from mmtutorial.data import scenes
from mmtutorial.models.detector import Detector, DetectorConfig, pad_targets, set_prediction_loss

from _timing import parse_args, print_header, print_ratio, print_steps, time_training_steps  # benchmarks/_timing.py


def build(device):
    ours_config = DetectorConfig(image_size=32, patch_size=8, in_channels=3, num_classes=24, num_detection_tokens=6,
                                 dim=64, num_layers=4, num_heads=4, mlp_ratio=2.0)
    theirs_config = YolosConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                                image_size=[32, 32], patch_size=8, num_channels=3, num_detection_tokens=6,
                                num_labels=24, use_mid_position_embeddings=False, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0, auxiliary_loss=False)
    torch.manual_seed(0)
    return Detector(ours_config).to(device), ours_config, YolosForObjectDetection(theirs_config).to(device)


def main() -> None:
    args, device = parse_args(__doc__, batch=64, reps=20, warmup=3)
    ours, ours_config, theirs = build(device)
    scene_list = scenes.generate_scenes(args.batch, split="train", seed=0)
    images = scenes.to_tensors(scene_list).to(device)                       # (batch, 3, 32, 32)
    targets = scenes.detection_targets(scene_list)
    target_boxes, target_labels = pad_targets(targets, 3, 32)                # (batch, 3, 4) cxcywh, (batch, 3)
    target_boxes, target_labels = target_boxes.to(device), target_labels.to(device)
    labels = [{"class_labels": target_labels[i][target_labels[i] >= 0],
               "boxes": target_boxes[i][target_labels[i] >= 0]} for i in range(args.batch)]
    optimizers = {"ours": torch.optim.AdamW(ours.parameters(), lr=1e-4),
                  "transformers": torch.optim.AdamW(theirs.parameters(), lr=1e-4)}

    def step_ours():
        logits, boxes = ours(images)
        return set_prediction_loss(logits, boxes, target_labels, target_boxes, ours_config)

    def step_theirs():
        return theirs(pixel_values=images, labels=labels).loss

    steps = {"ours": step_ours, "transformers": step_theirs}
    medians = time_training_steps(steps, optimizers, args, device)
    parameters = {"ours": sum(p.numel() for p in ours.parameters()),
                  "transformers": sum(p.numel() for p in theirs.parameters())}
    print_header(args, device)
    print_steps(args, medians, parameters)
    print_ratio(medians, "ours", "transformers")


if __name__ == "__main__":
    main()
