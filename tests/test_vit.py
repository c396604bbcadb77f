"""mmtutorial.models.vit: the one ViT tower and its options (class token or not, cls/mean/none pooling,
ln_pre, QuickGELU, no patch bias), attention weights from ``need_weights`` against softmax(QK^T / sqrt(d))
recomputed by hand, the closed-form parameter count, attention rollout, bad-input errors and the chapter 11
exercise checkers.  The comparison with torchvision's ViT (through its key map) is in test_zoo_vision.py."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torchvision.models import vit_b_16

from mmtutorial.exercises import ExerciseError, ch11
from mmtutorial.models import vit
from mmtutorial.nn import TransformerBlock, TransformerConfig, TransformerEncoder
from mmtutorial.nn.transformer import QuickGELU


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter perturbed (the head and class token start at zero), so that checks are non-trivial."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def attention_by_hand(block: TransformerBlock, x: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(head_dim)) of ``block``'s self-attention on its input x (batch, seq, dim)."""
    h = block.norm1(x) if block.config.norm == "pre" else x
    batch, seq, dim = h.shape
    heads = block.config.num_heads
    q, k, _ = block.attn.qkv_proj(h).split(dim, dim=-1)                     # each (batch, seq, dim)
    q = q.view(batch, seq, heads, dim // heads).transpose(1, 2)             # (batch, heads, seq, head_dim)
    k = k.view(batch, seq, heads, dim // heads).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(dim // heads)              # (batch, heads, seq, seq)
    if block.config.causal:
        scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(dim=-1)


# --------------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------------
def test_vit_b_16_has_torchvisions_parameter_count():
    with torch.device("meta"):                                   # no memory, no time: shapes only
        ours = vit.ViT(vit.ViTConfig.vit_b_16())
        theirs = vit_b_16()
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in theirs.parameters()) == 86_567_656
    assert vit.vit_parameter_count(vit.ViTConfig.vit_b_16()) == count
    assert vit.ViTConfig.vit_b_16().num_tokens == 197


@pytest.mark.parametrize("config", [
    vit.ViTConfig.tiny(), vit.ViTConfig.tiny(dim=96, mlp_ratio=4.0, num_classes=0),
    vit.ViTConfig(image_size=32, patch_size=4, in_channels=3, pool="mean"),
    vit.ViTConfig(class_token=False, pool="mean", num_classes=0),
    vit.ViTConfig(pool="none", norm_pre=True, patch_bias=False, activation="quick_gelu"),
    vit.ViTConfig(bias=False, norm_pre=True, num_classes=3, mlp_ratio=3.0),
])
def test_closed_form_parameter_count(config):
    assert vit.vit_parameter_count(config) == sum(p.numel() for p in vit.ViT(config).parameters())


# --------------------------------------------------------------------------------------------------
# The patch embedding
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_patch_embedding_conv_equals_unfold_and_linear(bias):
    torch.manual_seed(0)
    embedding = vit.PatchEmbedding(image_size=28, patch_size=7, in_channels=3, dim=16, bias=bias).double()
    images = torch.randn(2, 3, 28, 28, dtype=torch.float64)
    patches = embedding.patchify(images)                                            # (2, 16, 147)
    weight = embedding.proj.weight.reshape(16, -1)                                  # (16, 147)
    assert patches.shape == (2, 16, 3 * 7 * 7)
    expected = patches @ weight.T + (embedding.proj.bias if bias else 0)
    assert_close(embedding(images), expected)
    assert (embedding.proj.bias is None) == (not bias)
    # Patch (row 1, column 2) is pixels [7:14, 14:21], flattened channel-first: raster order.
    assert_close(patches[:, 1 * 4 + 2], images[:, :, 7:14, 14:21].reshape(2, -1))


# --------------------------------------------------------------------------------------------------
# need_weights: the attention weights are softmax(Q K^T / sqrt(d))
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm, causal", [("pre", False), ("post", False), ("pre", True)])
def test_block_need_weights_are_the_softmax_of_scaled_scores(norm, causal):
    torch.manual_seed(0)
    block = randomised(TransformerBlock(TransformerConfig(dim=16, num_heads=4, norm=norm, causal=causal))).double()
    x = torch.randn(3, 7, 16, dtype=torch.float64)                            # (batch, seq, dim)
    with torch.no_grad():
        out, weights = block(x, need_weights=True)
        assert_close(out, block(x))                                           # the same output as without
        expected = attention_by_hand(block, x)
    assert weights.shape == (3, 4, 7, 7)
    assert_close(weights, expected)
    assert_close(weights.sum(dim=-1), torch.ones(3, 4, 7, dtype=torch.float64))


def test_encoder_need_weights_gives_one_tensor_per_block():
    torch.manual_seed(0)
    encoder = randomised(TransformerEncoder(TransformerConfig(dim=16, num_heads=2, num_layers=3))).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    with torch.no_grad():
        out, weights = encoder(x, need_weights=True)
        assert_close(out, encoder(x))
        hidden = x
        for block, block_weights in zip(encoder.blocks, weights, strict=True):
            assert_close(block_weights, attention_by_hand(block, hidden))
            hidden = block(hidden)
    assert len(weights) == 3


def test_vit_need_weights_equal_recomputed_softmax_and_leave_the_output_unchanged():
    model = randomised(vit.ViT(vit.ViTConfig.tiny(dim=32, num_layers=2))).double()
    images = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        logits, attentions = model(images, need_weights=True)
        assert_close(logits, model(images))
        x = model.embed_tokens(images)                                        # (2, 17, 32)
        for block, weights in zip(model.encoder.blocks, attentions, strict=True):
            assert_close(weights, attention_by_hand(block, x))
            x = block(x)
    assert len(attentions) == 2 and attentions[0].shape == (2, 4, 17, 17)


# --------------------------------------------------------------------------------------------------
# The options
# --------------------------------------------------------------------------------------------------
def test_without_class_token_the_patches_are_the_sequence():
    config = vit.ViTConfig(class_token=False, pool="mean", num_classes=0, dim=32, num_layers=2)
    model = randomised(vit.ViT(config))
    images = torch.randn(3, 1, 28, 28)
    assert model.class_token is None and config.num_tokens == config.num_patches == 16
    with torch.no_grad():
        tokens = model.forward_tokens(images)                                 # (3, 16, 32): no class token
        assert tokens.shape == (3, 16, 32)
        assert_close(model(images), tokens.mean(dim=1))                       # every token is a patch
        z0 = model.embed_tokens(images)
        assert_close(z0, model.patch_embedding(images) + model.position_embedding.embedding.weight)
    with pytest.raises(ValueError, match="class_token=True"):
        vit.ViTConfig(class_token=False, pool="cls")


def test_mean_and_none_pooling_and_token_output():
    torch.manual_seed(0)
    model = randomised(vit.ViT(vit.ViTConfig.tiny(num_classes=0, dim=32)))
    images = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        tokens = model.forward_tokens(images)                                 # (4, 17, 32)
        assert tokens.shape == (4, 17, 32)
        assert_close(model(images), tokens[:, 0])                            # cls: the class token
        model.config.pool = "mean"
        assert_close(model(images), tokens[:, 1:].mean(dim=1))                # mean of the patches only
        model.config.pool = "none"
        assert_close(model(images), tokens)                                   # every token
    with_head = randomised(vit.ViT(vit.ViTConfig(pool="none", num_classes=5, dim=32)))
    with torch.no_grad():
        assert with_head(images).shape == (4, 17, 5)                          # the head on every token
        assert_close(with_head(images), with_head.head(with_head.forward_tokens(images)))


def test_norm_pre_normalises_the_embedded_tokens():
    model = randomised(vit.ViT(vit.ViTConfig(norm_pre=True, dim=32, num_layers=1)))
    images = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        patches = model.patch_embedding(images)                               # (2, 16, 32)
        tokens = torch.cat([model.class_token.expand(2, 1, 32), patches], dim=1) + model.position_embedding.embedding.weight
        expected = F.layer_norm(tokens, (32,), model.norm_pre.weight, model.norm_pre.bias, eps=1e-6)
        assert_close(model.embed_tokens(images), expected)
    assert isinstance(vit.ViT(vit.ViTConfig()).norm_pre, torch.nn.Identity)


def test_quick_gelu_activation():
    model = vit.ViT(vit.ViTConfig(activation="quick_gelu", dim=16, num_heads=2, num_layers=2))
    activation = model.encoder.blocks[0].mlp.activation
    assert isinstance(activation, QuickGELU)
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    assert_close(activation(x), x * torch.sigmoid(1.702 * x))
    assert (activation(x) - F.gelu(x)).abs().max() < 0.03                     # close to GELU, not equal
    assert (activation(x) - F.gelu(x)).abs().max() > 1e-3
    assert isinstance(vit.ViT(vit.ViTConfig()).encoder.blocks[0].mlp.activation, torch.nn.GELU)


def test_clip_initialisation():
    """init="clip": class token and positions ~ N(0, 1/d) (open_clip); init="vit": zero class token, std 0.02."""
    torch.manual_seed(0)
    clip_style = vit.ViT(vit.ViTConfig(dim=256, num_heads=4, num_layers=1, init="clip", patch_bias=False))
    positions = clip_style.position_embedding.embedding.weight
    assert abs(positions.std().item() - 256 ** -0.5) < 0.005 and clip_style.class_token.abs().sum() > 0
    torch.manual_seed(0)
    vit_style = vit.ViT(vit.ViTConfig(dim=256, num_heads=4, num_layers=1))
    assert abs(vit_style.position_embedding.embedding.weight.std().item() - 0.02) < 0.002
    assert vit_style.class_token.abs().sum() == 0 and vit_style.head.weight.abs().sum() == 0


# --------------------------------------------------------------------------------------------------
# Attention rollout, training, errors
# --------------------------------------------------------------------------------------------------
def test_attention_rollout():
    torch.manual_seed(0)
    attentions = [torch.randn(2, 3, 5, 5).softmax(dim=-1) for _ in range(3)]
    # One layer without the residual term is just the head average.
    assert_close(vit.attention_rollout(attentions[:1], residual=False), attentions[0].mean(dim=1))
    # Two layers: later layers multiply on the left.
    mixed = [0.5 * a.mean(dim=1) + 0.5 * torch.eye(5) for a in attentions[:2]]
    assert_close(vit.attention_rollout(attentions[:2]), mixed[1] @ mixed[0])
    rollout = vit.attention_rollout(attentions)
    assert_close(rollout.sum(dim=-1), torch.ones(2, 5))                           # still a mixing matrix
    with pytest.raises(ValueError):
        vit.attention_rollout([])
    with pytest.raises(ValueError):
        vit.attention_rollout([torch.ones(2, 5, 5)])


def test_seeded_training_is_reproducible_and_lowers_the_loss():
    def run():
        torch.manual_seed(0)
        model = vit.ViT(vit.ViTConfig.tiny(dim=32, num_layers=2))
        images, labels = torch.randn(32, 1, 28, 28), torch.arange(32) % 10
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        losses = []
        for _ in range(30):
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses, model.head.weight.detach().clone()

    (losses, weights), (losses_again, weights_again) = run(), run()
    assert losses == losses_again
    assert_close(weights, weights_again, rtol=0, atol=0)
    assert losses[-1] < 0.5 * losses[0]


def test_bad_inputs_raise_clear_errors():
    model = vit.ViT(vit.ViTConfig.tiny())
    with pytest.raises(ValueError, match="not even divisible by patch_size=7"):
        model(torch.zeros(2, 1, 30, 30))
    with pytest.raises(ValueError, match="built for 28 x 28"):
        model(torch.zeros(2, 1, 56, 56))
    with pytest.raises(ValueError, match="expected 1"):
        model(torch.zeros(2, 3, 28, 28))
    with pytest.raises(TypeError, match="uint8"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        model(torch.zeros(1, 28, 28))
    with pytest.raises(TypeError):
        model([[0.0]])


@pytest.mark.parametrize("fields, error, words", [
    ({"image_size": 30, "patch_size": 7}, ValueError, "not divisible by patch_size"),
    ({"dim": 30, "num_heads": 4}, ValueError, "divisible by num_heads"),
    ({"pool": "max"}, ValueError, "pool"),
    ({"activation": "tanh"}, ValueError, "ViTConfig: activation must be one of"),
    ({"dropout": 1.5}, ValueError, "dropout"),
    ({"class_token": 1}, TypeError, "class_token must be True or False"),
    ({"norm_pre": "yes"}, TypeError, "norm_pre"),
    ({"init": "xavier"}, ValueError, "init"),
    ({"num_classes": -1}, ValueError, "num_classes"),
    ({"layer_norm_eps": 0.0}, ValueError, "layer_norm_eps"),
])
def test_bad_configs_raise_clear_errors(fields, error, words):
    with pytest.raises(error, match=words):
        vit.ViTConfig(**fields)


def test_vit_wants_a_vit_config():
    with pytest.raises(TypeError, match="ViTConfig"):
        vit.ViT(TransformerConfig(dim=8, num_heads=2))


# --------------------------------------------------------------------------------------------------
# Exercise checkers
# --------------------------------------------------------------------------------------------------
def test_exercise_checkers_accept_right_and_reject_wrong_answers(capsys):
    def patchify(images, patch_size):
        batch, channels, height, width = images.shape
        grid_y, grid_x = height // patch_size, width // patch_size
        x = images.reshape(batch, channels, grid_y, patch_size, grid_x, patch_size)
        return x.permute(0, 2, 4, 1, 3, 5).reshape(batch, grid_y * grid_x, -1)

    def patchify_channels_last(images, patch_size):             # (P, P, C) order: a common slip
        batch, channels, height, width = images.shape
        grid = height // patch_size
        x = images.reshape(batch, channels, grid, patch_size, grid, patch_size)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(batch, grid * grid, -1)

    ch11.check_patchify(patchify)
    with pytest.raises(ExerciseError):
        ch11.check_patchify(patchify_channels_last)

    def count(image_size, patch, channels, dim, layers, mlp_dim, classes):
        tokens = (image_size // patch) ** 2 + 1
        block = 4 * dim * dim + 4 * dim + 2 * dim * mlp_dim + mlp_dim + dim + 4 * dim
        return channels * patch * patch * dim + dim + dim + tokens * dim + layers * block + 2 * dim + dim * classes + classes

    ch11.check_vit_parameter_count(count)
    with pytest.raises(ExerciseError):
        ch11.check_vit_parameter_count(lambda *args: count(*args) - args[3])       # forgot the class token

    ch11.check_attention_rollout(vit.attention_rollout)
    with pytest.raises(ExerciseError):
        ch11.check_attention_rollout(lambda atts: vit.attention_rollout(atts, residual=False))

    def not_written(*args):
        raise NotImplementedError
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch11.check_patchify(not_written)
    assert "correct" in capsys.readouterr().out
