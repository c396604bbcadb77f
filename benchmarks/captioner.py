"""Training-step throughput of chapter 16's captioner: images per second and caption tokens per second.

    python benchmarks/captioner.py                         # CPU, float32, the chapter's config, batch 128
    python benchmarks/captioner.py --threads 1 --reps 20   # steadier numbers on a shared machine
    python benchmarks/captioner.py --device cuda --dtype bf16 --batch 512

A step is what ``fit`` does with ``captioner.caption_loss``: encode the images (ViT patch tokens), decode the
shifted captions with teacher forcing, cross-entropy on the non-padding targets, backward, AdamW step.
For context the same step is timed with the decoder replaced by PyTorch's ``nn.TransformerDecoder``
(``norm_first=True``, the same weights copied layer by layer), in alternation (a, b, a, b, ...) so that load
from other processes slows both alike; the medians of ``--reps`` steps after ``--warmup`` are reported.
Tokens per second counts the scored target tokens (words and ``<eos>``, not padding).
"""
from __future__ import annotations

import argparse
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from mmtutorial.data import scenes
from mmtutorial.models.captioner import Captioner, caption_loss
from mmtutorial.zoo.scenes_captioner import scenes_captioner_config, scenes_captioner_recipe

from _timing import interleaved_medians   # benchmarks/_timing.py

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class TorchDecoderCaptioner(nn.Module):
    """Our encoder and embeddings, PyTorch's nn.TransformerDecoder, our final norm and head (same weights)."""

    def __init__(self, ours: Captioner) -> None:
        super().__init__()
        config = ours.config
        self.ours = ours
        layer = nn.TransformerDecoderLayer(config.dim, config.num_heads, int(config.mlp_ratio * config.dim),
                                           dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, config.num_layers)
        with torch.no_grad():   # ours -> theirs (the tests check the map the other way)
            for block, theirs in zip(ours.blocks, self.decoder.layers):
                for mine, other in ((block.self_attn, theirs.self_attn), (block.cross_attn, theirs.multihead_attn)):
                    other.in_proj_weight.copy_(mine.qkv_proj.weight)
                    other.in_proj_bias.copy_(mine.qkv_proj.bias)
                    other.out_proj.weight.copy_(mine.out_proj.weight)
                    other.out_proj.bias.copy_(mine.out_proj.bias)
                for mine, other in ((block.norm1, theirs.norm1), (block.norm2, theirs.norm2),
                                    (block.norm3, theirs.norm3), (block.mlp.fc, theirs.linear1),
                                    (block.mlp.proj, theirs.linear2)):
                    other.weight.copy_(mine.weight)
                    other.bias.copy_(mine.bias)

    def forward(self, images, tokens):
        memory = self.ours.encode(images)
        positions = torch.arange(tokens.size(1), device=tokens.device)
        x = self.ours.token_embedding(tokens) + self.ours.position_embedding(positions)
        mask = nn.Transformer.generate_square_subsequent_mask(tokens.size(1), device=tokens.device)
        x = self.decoder(x, memory, tgt_mask=mask, tgt_is_causal=True)
        return self.ours.lm_head(self.ours.norm(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="bf16: autocast (CUDA)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for but CUDA is not available")

    vocab, recipe = scenes.caption_vocabulary(), scenes_captioner_recipe()
    torch.manual_seed(0)
    ours = Captioner(scenes_captioner_config(vocab, recipe)).to(device).train()
    reference = TorchDecoderCaptioner(ours).to(device).train()
    batch_scenes = scenes.generate_scenes(args.batch, split="train", seed=0)
    images = scenes.to_tensors(batch_scenes).to(device)                              # (B, 3, 32, 32)
    captions = vocab.encode_batch([s.captions()[0] for s in batch_scenes], max_len=recipe.max_seq_len).to(device)
    scored_tokens = int((captions[:, 1:] != vocab.pad_id).sum())
    context = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.dtype == "bf16" else nullcontext
    optimizer = torch.optim.AdamW(ours.parameters(), lr=1e-4)                         # shared weights: tiny lr

    def loss_reference() -> torch.Tensor:
        logits = reference(images, captions[:, :-1])
        targets = captions[:, 1:].masked_fill(captions[:, 1:] == vocab.pad_id, -100)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    with torch.no_grad():
        first_ours, first_reference = caption_loss(ours, (images, captions)), loss_reference()
    torch.testing.assert_close(first_ours, first_reference, rtol=1e-4, atol=1e-4)

    def step(loss_fn):
        def run() -> None:
            optimizer.zero_grad(set_to_none=True)
            with context():
                loss = loss_fn()
            loss.backward()
            optimizer.step()
        return run

    medians = interleaved_medians({"ours": step(lambda: caption_loss(ours, (images, captions))),
                                   "torch decoder": step(loss_reference)}, args.reps, args.warmup, device)
    print(f"device {device}, dtype {args.dtype}, batch {args.batch}, threads {torch.get_num_threads()}, "
          f"{ours.num_parameters():,} parameters, {scored_tokens} scored tokens per batch")
    for name, median in medians.items():
        print(f"{name:>14}: {median * 1000:8.1f} ms/step  {args.batch / median:9.0f} images/s  "
              f"{scored_tokens / median:9.0f} tokens/s")
    print(f"ours / torch decoder = {medians['ours'] / medians['torch decoder']:.2f}")

if __name__ == "__main__":
    main()
