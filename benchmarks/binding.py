"""Training steps per second of chapter 20's binding model, for each of its two stages.

    python benchmarks/binding.py                           # CPU, the chapter's configuration and batch size
    python benchmarks/binding.py --threads 1 --reps 30     # steadier numbers on a shared machine
    python benchmarks/binding.py --device cuda --batch 256

A step is: forward, the stage's InfoNCE loss (``zoo.digits_binding.image_text_loss`` for stage 1: the image and
text towers; ``image_audio_loss`` for stage 2: the audio tower against frozen hub embeddings, on log-mels
computed once as in training), backward, AdamW step.  The inputs are random tensors of the chapter's shapes
(8 x 8 images, sentences of up to 8 words, 1 s of 16 kHz audio), so no data set is needed.  The stages run in
alternation in one process, and the median of ``--reps`` steps after ``--warmup`` is reported.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mmtutorial.models.binding import BindingConfig, BindingModel
from mmtutorial.zoo import digits_binding

from _timing import parse_args, time_training_steps  # benchmarks/_timing.py


def main() -> None:
    args, device = parse_args(__doc__, batch=32, reps=20, warmup=3)
    tokenizer = digits_binding.digit_tokenizer()
    torch.manual_seed(0)
    model = BindingModel(BindingConfig.digits(vocab_size=tokenizer.vocab_size,
                                              pad_id=tokenizer.stoi[digits_binding.PAD])).to(device).train()
    texts, _ = digits_binding.digit_sentences()
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 1, 8, 8, generator=generator).to(device)                   # (B, 1, 8, 8)
    tokens = digits_binding.encode_texts(tokenizer, [texts[i % len(texts)] for i in range(args.batch)]).to(device)
    with torch.no_grad():
        log_mels = model.encoders["audio"].front_end(0.1 * torch.randn(args.batch, 16000, generator=generator).to(device))
    hub = F.normalize(torch.randn(args.batch, model.config.embed_dim, generator=generator), dim=-1).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    steps = {"stage 1 (image-text)": lambda: digits_binding.image_text_loss(model, (images, tokens)),
             "stage 2 (image-audio)": lambda: digits_binding.image_audio_loss(model, (hub, log_mels))}
    medians = time_training_steps(steps, {name: optimizer for name in steps}, args, device)
    print(f"device {device}, batch {args.batch}, threads {torch.get_num_threads()}, {args.reps} reps, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")
    for name, median in medians.items():
        print(f"{name:>22}: median step {median * 1e3:.1f} ms, {1 / median:.1f} steps/s ({args.batch / median:.0f} pairs/s)")


if __name__ == "__main__":
    main()
