"""mmtutorial.models.vit against torchvision's VisionTransformer and nn.MultiheadAttention, plus the
closed-form parameter count, attention rollout, bad-input errors and the chapter 11 exercise checkers."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torchvision.models import vit_b_16
from torchvision.models.vision_transformer import VisionTransformer

from mmtutorial.exercises import ExerciseError, ch11
from mmtutorial.models import vit


def small_torchvision_vit(num_classes: int = 7) -> VisionTransformer:
    """A random 2-layer torchvision ViT whose weights are all non-trivial (its head starts at zero)."""
    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64,
                              mlp_dim=128, num_classes=num_classes)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def test_vit_b_16_has_torchvisions_parameter_count():
    with torch.device("meta"):                                   # no memory, no time: shapes only
        ours = vit.ViT(vit.ViTConfig.vit_b_16())
        theirs = vit_b_16()
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in theirs.parameters()) == 86_567_656
    assert vit.vit_parameter_count(vit.ViTConfig.vit_b_16()) == count
    assert vit.ViTConfig.vit_b_16().num_tokens == 197


@pytest.mark.parametrize("config", [vit.ViTConfig.tiny(), vit.ViTConfig.tiny(dim=96, mlp_ratio=4.0, num_classes=0),
                                    vit.ViTConfig(image_size=32, patch_size=4, in_channels=3, pool="mean")])
def test_closed_form_parameter_count(config):
    assert vit.vit_parameter_count(config) == sum(p.numel() for p in vit.ViT(config).parameters())


def test_patch_embedding_conv_equals_unfold_and_linear():
    torch.manual_seed(0)
    embedding = vit.PatchEmbedding(image_size=28, patch_size=7, in_channels=3, dim=16)
    images = torch.randn(2, 3, 28, 28, dtype=torch.float64)
    embedding.double()
    patches = embedding.patchify(images)                                            # (2, 16, 147)
    weight = embedding.proj.weight.reshape(16, -1)                                  # (16, 147)
    assert patches.shape == (2, 16, 3 * 7 * 7)
    assert_close(embedding(images), patches @ weight.T + embedding.proj.bias)
    # Patch (row 1, column 2) is pixels [7:14, 14:21], flattened channel-first: raster order.
    assert_close(patches[:, 1 * 4 + 2], images[:, :, 7:14, 14:21].reshape(2, -1))


def test_logits_equal_torchvision_after_loading_its_weights():
    theirs = small_torchvision_vit()
    ours = vit.load_torchvision_vit(vit.ViT(vit.config_from_torchvision_vit(theirs)), theirs).eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert_close(ours(images), theirs(images), rtol=1e-5, atol=1e-5)
        assert ours(images).abs().max() > 0.1                                      # a non-trivial check
    assert ours.config.layer_norm_eps == 1e-6 and ours.config.mlp_ratio == 2.0


def test_key_map_covers_torchvision_vit_b_16_with_matching_shapes():
    with torch.device("meta"):
        theirs = vit_b_16().state_dict()
        ours = vit.ViT(vit.ViTConfig.vit_b_16()).state_dict()
    mapping = vit.torchvision_vit_key_map(12)
    assert set(mapping) == set(theirs) and set(mapping.values()) == set(ours)
    for their_name, our_name in mapping.items():
        expected = theirs[their_name].shape[1:] if their_name == "encoder.pos_embedding" else theirs[their_name].shape
        assert ours[our_name].shape == expected, their_name


def test_attention_weights_equal_torch_multihead_attention():
    theirs = small_torchvision_vit()
    ours = vit.load_torchvision_vit(vit.ViT(vit.config_from_torchvision_vit(theirs)), theirs).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, attentions = ours(images, return_attention=True)
        assert_close(logits, ours(images))
        tokens = ours.embed_tokens(images)                                        # (2, 17, 64)
        layer = theirs.encoder.layers[0]
        normed = layer.ln_1(tokens)
        _, expected = layer.self_attention(normed, normed, normed, need_weights=True, average_attn_weights=False)
    assert len(attentions) == 2 and attentions[0].shape == (2, 4, 17, 17)
    assert_close(attentions[0], expected, rtol=1e-5, atol=1e-6)
    assert_close(attentions[1].sum(dim=-1), torch.ones(2, 4, 17))


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


def test_mean_pooling_and_feature_output():
    torch.manual_seed(0)
    model = vit.ViT(vit.ViTConfig.tiny(num_classes=0, dim=32)).eval()
    images = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        features = model.forward_features(images)                                  # (4, 17, 32)
        assert_close(model(images), features[:, 0])
        model.config.pool = "mean"
        assert_close(model(images), features[:, 1:].mean(dim=1))


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
    with pytest.raises(ValueError, match="configured for 28 x 28"):
        model(torch.zeros(2, 1, 56, 56))
    with pytest.raises(ValueError, match="in_channels=1"):
        model(torch.zeros(2, 3, 28, 28))
    with pytest.raises(TypeError, match="uint8"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        model(torch.zeros(1, 28, 28))
    with pytest.raises(TypeError):
        model([[0.0]])
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        vit.ViTConfig(image_size=30, patch_size=7)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        vit.ViTConfig(dim=30, num_heads=4)
    with pytest.raises(ValueError, match="pool"):
        vit.ViTConfig(pool="max")
    with pytest.raises(TypeError):
        vit.ViT(vit.TransformerConfig(dim=8, num_heads=2))
    with pytest.raises(TypeError):
        vit.load_torchvision_vit(vit.ViT(vit.ViTConfig.tiny()), torch.nn.Linear(2, 2))
    theirs = small_torchvision_vit()
    wrong = vit.ViT(vit.ViTConfig(image_size=32, patch_size=8, in_channels=3, num_classes=7, dim=64,
                                  num_layers=2, num_heads=4, mlp_ratio=4.0))
    with pytest.raises(ValueError, match="shape mismatch"):
        vit.load_torchvision_vit(wrong, theirs)


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
