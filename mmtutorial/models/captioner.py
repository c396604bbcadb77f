"""An image captioner: a ViT encoder that gives patch tokens, and a Transformer decoder that writes.

Show-and-Tell (Vinyals et al., 2015) fed one pooled image vector to an RNN; Show-Attend-and-Tell (Xu et
al., 2015) let every generated word look at a grid of image features.  This file is the Transformer form
of the second idea, as in the encoder-decoder of Vaswani et al. (2017):

    memory  M = ViT(image)                          (batch, N, d): one token per patch, no pooling
    x_0     = E[w_{<t}] + P                         caption prefix: token + learned position embeddings
    x       = x + SelfAttn(LN1(x), causal)          word t sees words <= t only
    x       = x + CrossAttn(LN2(x), M, M)           queries from the words, keys and values from the patches
    x       = x + MLP(LN3(x))                       (pre-LN, as nn.TransformerDecoderLayer(norm_first=True))
    p(w_t | w_{<t}, image) = softmax(W LN(x_L))_t

Training is **teacher forcing**: the decoder reads the true caption shifted right (``<bos> w_1 ... w_n``)
and is scored on predicting ``w_1 ... w_n <eos>`` at every position at once; padding is ignored.
Inference feeds back its own words: :func:`greedy_decode` takes the most likely word each step,
:func:`beam_search` keeps the ``beam_size`` best prefixes and ranks finished captions by
log-probability / length^alpha (length normalisation; alpha = 0 is the raw sum, which favours short
captions).  With ``beam_size=1`` beam search *is* greedy decoding (a unit test).

The encoder is the package's one ViT (``models/vit.py``) configured with ``pool="none"`` and no class
token; cross-attention is ``mmtutorial.nn.MultiHeadAttention`` with keys and values from the image, the same
computation as ``torch.nn.MultiheadAttention(query, memory, memory)`` (``zoo.torch_nn.load_torch_mha``
copies the weights to check it).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_images, check_token_ids
from ..nn import KVCache, MultiHeadAttention
from ..nn.transformer import MLP
from .vit import ViT, ViTConfig

__all__ = ["CaptionerConfig", "DecoderBlock", "Captioner", "caption_loss", "greedy_decode", "beam_search",
           "strip_special"]


@dataclass
class CaptionerConfig:
    vocab_size: int               # words of the caption vocabulary (specials included)
    max_seq_len: int = 16         # longest token sequence the decoder has positions for (<bos> ... <eos>)
    dim: int = 64                 # width d of the image tokens and of the decoder
    num_layers: int = 2           # decoder blocks
    num_heads: int = 4            # attention heads in every attention layer (encoder and decoder)
    mlp_ratio: float = 2.0        # MLP hidden size = mlp_ratio * dim
    dropout: float = 0.0          # dropout on attention weights and residual branches
    bias: bool = True             # biases in linear layers and LayerNorms
    image_size: int = 32          # square input images of image_size pixels
    patch_size: int = 4           # P: the encoder gives (image_size / P)^2 patch tokens
    in_channels: int = 3          # 3 for RGB
    encoder_layers: int = 2       # ViT blocks of the image encoder
    pad_id: int = 0               # token ids of the specials (scenes.Vocabulary's: <pad>=0, <bos>=1, <eos>=2)
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_seq_len", "dim", "num_layers", "num_heads", "encoder_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CaptionerConfig.{name} must be a positive int, got {value!r}")
        if self.max_seq_len < 2:
            raise ValueError(f"CaptionerConfig.max_seq_len must be >= 2 (<bos> and one word), got {self.max_seq_len}")
        if self.dim % self.num_heads:
            raise ValueError(f"CaptionerConfig.dim={self.dim} must be divisible by num_heads={self.num_heads}")
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(f"CaptionerConfig.{name} must be a token id in [0, {self.vocab_size}), got {value!r}")
        if len({self.pad_id, self.bos_id, self.eos_id}) != 3:
            raise ValueError("CaptionerConfig: pad_id, bos_id and eos_id must be three different ids")
        self.vision_config()                 # image_size/patch_size, dropout, mlp_ratio checked by ViTConfig

    def vision_config(self) -> ViTConfig:
        """The image encoder: the package's ViT with every patch token out (no class token, no head)."""
        return ViTConfig(image_size=self.image_size, patch_size=self.patch_size, in_channels=self.in_channels,
                         num_classes=0, dim=self.dim, num_layers=self.encoder_layers, num_heads=self.num_heads,
                         mlp_ratio=self.mlp_ratio, dropout=self.dropout, bias=self.bias, class_token=False,
                         pool="none")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


class DecoderBlock(nn.Module):
    """Pre-LN decoder layer: causal self-attention, cross-attention to the image tokens, MLP.

    Same computation as ``nn.TransformerDecoderLayer(dim, heads, mlp_ratio * dim, activation="gelu",
    batch_first=True, norm_first=True)`` with ``tgt_is_causal``.
    """

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        dim, eps = config.dim, 1e-5
        self.norm1 = nn.LayerNorm(dim, eps=eps, bias=config.bias)
        self.self_attn = MultiHeadAttention(dim, config.num_heads, dropout=config.dropout, bias=config.bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps, bias=config.bias)
        self.cross_attn = MultiHeadAttention(dim, config.num_heads, dropout=config.dropout, bias=config.bias)
        self.norm3 = nn.LayerNorm(dim, eps=eps, bias=config.bias)
        self.mlp = MLP(dim, int(config.mlp_ratio * dim), "gelu", config.dropout, config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, memory: Tensor, kv_cache: KVCache | None = None,
                need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """x (batch, seq, dim) attends to itself causally and to ``memory`` (batch, N, dim).

        ``need_weights=True`` also returns the cross-attention weights (batch, heads, seq, N).
        """
        x = x + self.dropout(self.self_attn(self.norm1(x), is_causal=True, kv_cache=kv_cache))
        attended = self.cross_attn(self.norm2(x), memory, memory, need_weights=need_weights)
        attended, weights = attended if need_weights else (attended, None)
        x = x + self.dropout(attended)                                       # (batch, seq, dim)
        x = x + self.dropout(self.mlp(self.norm3(x)))
        return (x, weights) if need_weights else x


class Captioner(nn.Module):
    """Images (batch, C, H, W) and caption prefixes (batch, T) -> next-word logits (batch, T, vocab_size)."""

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        if not isinstance(config, CaptionerConfig):
            raise TypeError(f"Captioner wants a CaptionerConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = ViT(config.vision_config())
        self.token_embedding = nn.Embedding(config.vocab_size, config.dim)
        self.position_embedding = nn.Embedding(config.max_seq_len, config.dim)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.dim, bias=config.bias)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        for embedding in (self.token_embedding, self.position_embedding):
            nn.init.normal_(embedding.weight, std=0.02)                   # GPT-2's initialisation

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, images: Tensor) -> Tensor:
        """Images -> memory (batch, N, dim): every patch token, so each word can look at a different place."""
        config = self.config
        check_images(images, channels=config.in_channels, size=config.image_size, divisible_by=config.patch_size)
        return self.encoder.forward_tokens(images)                        # (batch, N, dim)

    def decode(self, tokens: Tensor, memory: Tensor, kv_caches: list[KVCache] | None = None,
               need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Token ids (batch, T) and memory (batch, N, dim) -> logits (batch, T, vocab_size).

        With ``kv_caches`` (one per block) ``tokens`` are the new tokens only and continue the cached
        positions.  ``need_weights=True`` also returns each block's cross-attention weights
        (batch, heads, T, N).
        """
        start = 0 if kv_caches is None else len(kv_caches[0])
        check_token_ids(tokens, self.config.vocab_size, name="caption tokens", max_len=self.config.max_seq_len,
                        start=start)
        if not isinstance(memory, Tensor) or memory.dim() != 3 or memory.size(-1) != self.config.dim \
                or memory.size(0) != tokens.size(0):
            got = tuple(memory.shape) if isinstance(memory, Tensor) else type(memory).__name__
            raise ValueError(f"memory must be (batch={tokens.size(0)}, N, dim={self.config.dim}) image tokens, "
                             f"got {got}")
        if kv_caches is not None and len(kv_caches) != len(self.blocks):
            raise ValueError(f"kv_caches must hold one KVCache per block ({len(self.blocks)}), got {len(kv_caches)}")
        positions = torch.arange(start, start + tokens.size(1), device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)   # (batch, T, dim)
        weights = []
        for i, block in enumerate(self.blocks):
            x = block(x, memory, kv_cache=None if kv_caches is None else kv_caches[i], need_weights=need_weights)
            if need_weights:
                x, block_weights = x
                weights.append(block_weights)                               # (batch, heads, T, N)
        logits = self.lm_head(self.norm(x))                                 # (batch, T, vocab_size)
        return (logits, weights) if need_weights else logits

    def forward(self, images: Tensor, tokens: Tensor) -> Tensor:
        """Teacher forcing: logits (batch, T, vocab_size) for every prefix of ``tokens`` at once."""
        return self.decode(tokens, self.encode(images))

    def new_kv_caches(self) -> list[KVCache]:
        return [KVCache() for _ in self.blocks]


def caption_loss(model: Captioner, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Teacher-forcing cross-entropy: read ``<bos> w_1 .. w_n``, predict ``w_1 .. w_n <eos>``; pads ignored.

    ``batch`` is (images (B, C, H, W), captions (B, L) = <bos> words <eos> <pad>...), ``fit``'s loss_fn form.
    """
    images, captions = batch
    check_token_ids(captions, model.config.vocab_size, name="captions")
    if captions.size(1) < 2:
        raise ValueError(f"captions must hold <bos> and at least one more token, got shape {tuple(captions.shape)}")
    inputs, targets = captions[:, :-1], captions[:, 1:]                      # (B, L-1) each: shifted by one
    if bool((targets == model.config.pad_id).all()) if targets.device.type == "cpu" else False:
        raise ValueError("every caption is empty (only <bos> and padding): nothing to learn from")
    logits = model(images, inputs)                                           # (B, L-1, vocab)
    targets = targets.masked_fill(targets == model.config.pad_id, -100)     # padding counts for nothing
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def strip_special(ids, eos_id: int = 2) -> list[int]:
    """A generated sequence up to (not including) its first ``<eos>``."""
    ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    return ids[:ids.index(eos_id)] if eos_id in ids else ids


def _max_new_tokens(model: Captioner, max_new_tokens: int | None) -> int:
    limit = model.config.max_seq_len - 1                                    # <bos> takes one position
    if max_new_tokens is None:
        return limit
    if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= limit:
        raise ValueError(f"max_new_tokens must be an int in [1, max_seq_len - 1 = {limit}], got {max_new_tokens!r}")
    return max_new_tokens


@torch.no_grad()
def greedy_decode(model: Captioner, images: Tensor, max_new_tokens: int | None = None) -> list[list[int]]:
    """The most likely word at every step, fed back, until ``<eos>``: one list of word ids per image
    (without ``<bos>``/``<eos>``).  Uses a KV cache, so each step costs one new position."""
    config, steps = model.config, _max_new_tokens(model, max_new_tokens)
    memory = model.encode(images)                                            # (B, N, dim)
    batch = memory.size(0)
    caches = model.new_kv_caches()
    token = torch.full((batch, 1), config.bos_id, dtype=torch.long, device=memory.device)
    generated = []
    finished = torch.zeros(batch, dtype=torch.bool, device=memory.device)
    for _ in range(steps):
        logits = model.decode(token, memory, kv_caches=caches)[:, -1]       # (B, vocab)
        token = logits.argmax(dim=-1, keepdim=True)                          # (B, 1)
        generated.append(token)
        finished |= token[:, 0] == config.eos_id
        if bool(finished.all()):
            break
    sequences = torch.cat(generated, dim=1).cpu()                            # (B, steps)
    return [strip_special(row, config.eos_id) for row in sequences]


@torch.no_grad()
def beam_search(model: Captioner, images: Tensor, beam_size: int = 3, length_penalty: float = 1.0,
                max_new_tokens: int | None = None, return_scores: bool = False):
    """Beam search: keep the ``beam_size`` most probable prefixes per image; a prefix that emits ``<eos>``
    becomes a finished hypothesis scored by ``sum log p / length ** length_penalty`` (length counts the
    words and ``<eos>``).  A search stops when it holds ``beam_size`` finished hypotheses and no running
    prefix, scored at its current length, beats the ``beam_size``-th best of them (or when it runs out of
    positions; the unfinished beams are then scored the same way).  Returns the best caption per image
    (word ids, no specials) and, with ``return_scores``, its normalised score.
    """
    if not isinstance(beam_size, int) or isinstance(beam_size, bool) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
    if not isinstance(length_penalty, (int, float)) or isinstance(length_penalty, bool) or length_penalty < 0:
        raise ValueError(f"length_penalty must be a number >= 0, got {length_penalty!r}")
    config, steps = model.config, _max_new_tokens(model, max_new_tokens)
    memory = model.encode(images)                                            # (B, N, dim)
    batch, device = memory.size(0), memory.device
    memory = memory.repeat_interleave(beam_size, dim=0)                      # (B*K, N, dim), beams of an image together
    sequences = torch.full((batch, beam_size, 1), config.bos_id, dtype=torch.long, device=device)  # (B, K, t)
    beam_scores = torch.full((batch, beam_size), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0                                                  # all beams start equal: expand one
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch

    def normalised(log_prob: float, length: int) -> float:
        return log_prob / (length ** length_penalty)

    for step in range(steps):
        logits = model.decode(sequences.flatten(0, 1), memory)[:, -1]        # (B*K, vocab): whole prefix
        log_probs = F.log_softmax(logits.float(), dim=-1).view(batch, beam_size, -1)   # (B, K, vocab)
        candidates = (beam_scores[..., None] + log_probs).flatten(1)         # (B, K*vocab)
        top_scores, top_index = candidates.topk(min(2 * beam_size, candidates.size(1)), dim=1)  # (B, 2K): refills K beams
        vocab = log_probs.size(-1)
        top_beam, top_token = (top_index // vocab).tolist(), (top_index % vocab).tolist()
        top_scores_list = top_scores.tolist()
        next_beams = torch.zeros(batch, beam_size, dtype=torch.long)
        next_tokens = torch.full((batch, beam_size), config.pad_id, dtype=torch.long)
        next_scores = torch.full((batch, beam_size), float("-inf"))
        length = step + 1
        for b in range(batch):
            if done[b]:
                continue
            filled = 0
            for rank in range(len(top_token[b])):
                score, beam, token = top_scores_list[b][rank], top_beam[b][rank], top_token[b][rank]
                if score == float("-inf"):
                    break
                if token == config.eos_id:
                    if rank < beam_size:         # only an <eos> among the K best counts (as Hugging Face's)
                        words = sequences[b, beam, 1:].tolist()
                        finished[b].append((normalised(score, length), words))
                else:
                    next_beams[b, filled], next_tokens[b, filled], next_scores[b, filled] = beam, token, score
                    filled += 1
                if filled == beam_size:
                    break
            if len(finished[b]) >= beam_size:
                # Done when no running prefix, scored at the current length, beats the K-th best finished one:
                # exact for length_penalty = 0 (log-probabilities only fall as words are added), the usual
                # heuristic otherwise (Hugging Face's early_stopping=False).  Stopping at the first K finished
                # hypotheses instead would drop a better caption that is still being written.
                kth_best = sorted((score for score, _ in finished[b]), reverse=True)[beam_size - 1]
                best_running = float(next_scores[b].max())
                if best_running == float("-inf") or normalised(best_running, length) <= kth_best:
                    done[b] = True
        if all(done):
            break
        index = next_beams.to(device)
        sequences = torch.cat([sequences.gather(1, index[..., None].expand(-1, -1, sequences.size(-1))),
                               next_tokens.to(device)[..., None]], dim=-1)    # (B, K, t + 1)
        beam_scores = next_scores.to(device)
    else:                                           # out of positions: unfinished beams compete as they are
        for b in range(batch):
            if not done[b]:
                for beam in range(beam_size):
                    score = float(beam_scores[b, beam])
                    if score > float("-inf"):
                        finished[b].append((normalised(score, sequences.size(-1) - 1), sequences[b, beam, 1:].tolist()))
    best = [max(hypotheses, key=lambda item: item[0]) for hypotheses in finished]
    captions = [words for _, words in best]
    return (captions, [score for score, _ in best]) if return_scores else captions
