"""Chapter 19: MAE against transformers' ViTMAEForPreTraining (same weights, same noise: same mask, ids_restore,
decoder output and loss), patchify/unpatchify against transformers, the 2-D sin-cos positions against
transformers' builder, random masking's invariants, the classifier built from the encoder, the ViT's
subset-of-patches path, bad inputs, and the chapter 19 exercise checkers."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from mmtutorial.exercises import ExerciseError, ch19
from mmtutorial.models import mae as mae_module
from mmtutorial.models.mae import (MAE, MAEConfig, mae_classifier, masked_patch_loss, normalize_patches, patchify,
                                   random_masking, sincos_position_embedding_2d, unpatchify)
from mmtutorial.models.vit import ViT
from mmtutorial.zoo import vitmae


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def tiny_config(**overrides) -> MAEConfig:
    values = dict(image_size=28, patch_size=7, dim=32, num_layers=2, num_heads=4, decoder_dim=16,
                  decoder_num_layers=2, decoder_num_heads=2)
    values.update(overrides)
    return MAEConfig(**values)


def transformers_positions(grid: int, dim: int) -> torch.Tensor:
    """transformers' own table, with the half swap it applies for MAE's released weights."""
    from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

    table = build_2d_sinusoidal_position_embedding(grid, grid, dim, cls_token=True)
    return torch.cat([table[:, dim // 2:], table[:, :dim // 2]], dim=1)


def random_pair(config: MAEConfig, seed: int = 0):
    """A transformers ViTMAEForPreTraining with random weights everywhere (its fixed position tables filled by
    transformers' builder, its mask and class tokens random) and our MAE loaded from it."""
    from transformers import ViTMAEForPreTraining

    torch.manual_seed(seed)
    theirs = ViTMAEForPreTraining(vitmae.vitmae_config(config)).eval()
    with torch.no_grad():
        theirs.vit.embeddings.position_embeddings.copy_(transformers_positions(config.grid_size, config.dim)[None])
        theirs.decoder.decoder_pos_embed.copy_(transformers_positions(config.grid_size, config.decoder_dim)[None])
        theirs.decoder.mask_token.normal_()
        theirs.vit.embeddings.cls_token.normal_()
        for parameter in theirs.parameters():
            if parameter.dim() == 1:
                parameter.add_(0.1 * torch.randn_like(parameter))    # biases and LayerNorms away from 0 and 1
    return theirs, vitmae.load_vitmae(MAE(config), theirs).eval()


# -- the pieces ------------------------------------------------------------------------------------
def test_sincos_positions_match_transformers():
    for grid, dim in ((4, 32), (7, 64), (14, 768)):
        assert_close(sincos_position_embedding_2d(grid, dim), transformers_positions(grid, dim))
    fresh = MAE(tiny_config())
    assert_close(fresh.encoder.position_embedding.embedding.weight, transformers_positions(4, 32))
    assert not fresh.encoder.position_embedding.embedding.weight.requires_grad


@pytest.mark.parametrize("channels,patch", [(1, 7), (1, 4), (3, 8)])
def test_patchify_matches_transformers(channels, patch):
    from transformers import ViTMAEForPreTraining

    size = 28 if patch != 8 else 32
    config = MAEConfig(image_size=size, patch_size=patch, in_channels=channels, dim=16, num_layers=1, num_heads=2,
                       decoder_dim=8, decoder_num_layers=1, decoder_num_heads=2)
    theirs = ViTMAEForPreTraining(vitmae.vitmae_config(config))
    images = torch.rand(2, channels, size, size)
    patches = patchify(images, patch)
    assert_close(patches, theirs.patchify(images))
    assert_close(unpatchify(patches, patch, channels), images)
    assert_close(unpatchify(patches, patch, channels), theirs.unpatchify(patches))


def test_random_masking_invariants():
    torch.manual_seed(0)
    tokens = torch.randn(5, 16, 8)
    visible, mask, ids_restore = random_masking(tokens, 0.75)
    assert visible.shape == (5, 4, 8) and mask.shape == (5, 16)
    assert torch.equal(mask.sum(1), torch.full((5,), 12.0))
    for b in range(5):                                  # the visible tokens are exactly the unmasked ones
        kept = tokens[b][mask[b] == 0]
        assert torch.equal(torch.sort(kept, dim=0).values, torch.sort(visible[b], dim=0).values)
        assert torch.equal(torch.sort(ids_restore[b]).values, torch.arange(16))
    # with given noise the kept patches are those of smallest noise
    noise = torch.arange(16.0).flip(0).repeat(2, 1)     # patch 15 has the smallest noise
    _, mask, _ = random_masking(tokens[:2], 0.75, noise)
    assert torch.equal(mask[0], torch.tensor([1.0] * 12 + [0.0] * 4))


def test_masked_loss_counts_masked_patches_only():
    prediction, target = torch.zeros(1, 4, 3), torch.ones(1, 4, 3)
    prediction[0, 0] = 1.0                               # perfect on patch 0 only
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    assert masked_patch_loss(prediction, target, mask).item() == 1.0
    assert masked_patch_loss(prediction, target, 1 - mask).item() == 0.0
    patches = torch.rand(2, 5, 49, dtype=torch.float64)
    normalised = normalize_patches(patches)
    assert_close(normalised.mean(-1), torch.zeros(2, 5, dtype=torch.float64))
    assert_close(normalised.var(-1), patches.var(-1) / (patches.var(-1) + 1e-6))


# -- the model against transformers ----------------------------------------------------------------
@pytest.mark.parametrize("patch,ratio", [(7, 0.75), (4, 0.75), (4, 0.5)])
def test_mae_matches_transformers(patch, ratio):
    config = tiny_config(patch_size=patch, mask_ratio=ratio)
    theirs, ours = random_pair(config)
    images = torch.rand(3, 1, 28, 28)
    noise = torch.rand(3, config.num_patches)
    with torch.no_grad():
        expected = theirs(pixel_values=images, noise=noise)
        got = ours(images, noise=noise)
    assert torch.equal(got.mask, expected.mask)
    assert torch.equal(got.ids_restore, expected.ids_restore)
    assert_close(got.prediction, expected.logits, rtol=1e-4, atol=1e-5)
    assert_close(got.loss, expected.loss, rtol=1e-4, atol=1e-6)
    latent, _, _ = ours.forward_encoder(images, noise=noise)
    with torch.no_grad():
        their_latent = theirs.vit(pixel_values=images, noise=noise).last_hidden_state
    assert_close(latent, their_latent, rtol=1e-4, atol=1e-5)


def test_mae_gradients_match_transformers():
    config = tiny_config(norm_pix_loss=False)
    theirs, ours = random_pair(config, seed=1)
    images, noise = torch.rand(2, 1, 28, 28), torch.rand(2, 16)
    theirs(pixel_values=images, noise=noise).loss.backward()
    ours(images, noise=noise).loss.backward()
    their_grads = {name: p.grad for name, p in theirs.named_parameters() if p.grad is not None}
    converted = vitmae.convert_vitmae_state_dict(their_grads | {n: torch.zeros_like(p) for n, p in
                                                                theirs.named_parameters() if p.grad is None},
                                                 config.num_layers, config.decoder_num_layers)
    for name, parameter in ours.named_parameters():
        if parameter.requires_grad:
            assert_close(parameter.grad, converted[name], rtol=1e-4, atol=1e-6, msg=name)


def test_config_round_trip_and_key_map_is_complete():
    config = tiny_config(patch_size=4, mask_ratio=0.6)
    assert vitmae.config_from_vitmae(vitmae.vitmae_config(config)) == config
    theirs, ours = random_pair(config)
    mapped = set(vitmae.vitmae_key_map(config.num_layers, config.decoder_num_layers).values())
    assert mapped == set(ours.state_dict())
    with pytest.raises(ValueError, match="mapped names it lacks"):
        vitmae.convert_vitmae_state_dict({"vit.layernorm.weight": torch.ones(32)}, 2, 2)
    with pytest.raises(ValueError, match="shape mismatch"):
        vitmae.load_vitmae(MAE(tiny_config(dim=64)), theirs)


# -- our own model ---------------------------------------------------------------------------------
def test_encoder_sees_visible_patches_only():
    """Changing a hidden patch's pixels changes nothing in the encoder's output."""
    torch.manual_seed(0)
    model = MAE(tiny_config()).eval()
    images, noise = torch.rand(1, 1, 28, 28), torch.rand(1, 16)
    latent, mask, _ = model.forward_encoder(images, noise=noise)
    hidden = int(mask[0].nonzero()[0])
    row, col = divmod(hidden, 4)
    changed = images.clone()
    changed[..., row * 7:(row + 1) * 7, col * 7:(col + 1) * 7] = 5.0
    assert_close(model.forward_encoder(changed, noise=noise)[0], latent)
    assert latent.shape == (1, 1 + 4, 32)


def test_vit_subset_path_equals_full_path():
    torch.manual_seed(0)
    model = MAE(tiny_config()).eval()
    images = torch.rand(2, 1, 28, 28)
    full = model.encoder.forward_tokens(images)
    via_parts = model.encoder.encoder(model.encoder.prepend_prefix_tokens(model.encoder.embed_patches(images)))
    assert_close(full, via_parts)


def test_classifier_from_mae_and_from_scratch():
    torch.manual_seed(0)
    model = MAE(tiny_config())
    classifier = mae_classifier(model, num_classes=10)
    assert isinstance(classifier, ViT) and classifier.config.pool == "mean"
    for name, value in model.encoder.state_dict().items():
        assert_close(classifier.state_dict()[name], value)
    assert classifier(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    scratch = mae_classifier(tiny_config(), num_classes=10)
    assert_close(scratch.position_embedding.embedding.weight, sincos_position_embedding_2d(4, 32))
    assert not scratch.position_embedding.embedding.weight.requires_grad
    with pytest.raises(TypeError, match="MAE or an MAEConfig"):
        mae_classifier("mae")


def test_reconstruct_keeps_visible_patches():
    torch.manual_seed(0)
    model = MAE(tiny_config()).eval()
    images = torch.rand(2, 1, 28, 28)
    output = model(images)
    masked, reconstruction = model.reconstruct(images, output)
    visible = (1 - output.mask)[..., None]
    assert_close(patchify(reconstruction, 7) * visible, patchify(images, 7) * visible)
    assert_close(patchify(masked, 7) * (1 - visible), torch.zeros(2, 16, 49))


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    model = MAE(tiny_config())
    images = torch.rand(16, 1, 28, 28)
    noise = torch.rand(16, 16)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = model(images, noise=noise).loss.item()
    for _ in range(30):
        optimizer.zero_grad()
        model(images, noise=noise).loss.backward()
        optimizer.step()
    assert model(images, noise=noise).loss.item() < 0.8 * first


# -- bad inputs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_mask_ratio_outside_open_interval_is_refused(ratio):
    with pytest.raises(ValueError, match=r"open interval \(0, 1\)"):
        random_masking(torch.zeros(1, 16, 4), ratio)
    with pytest.raises(ValueError, match=r"open interval \(0, 1\)"):
        tiny_config(mask_ratio=ratio)


def test_bad_inputs_are_refused():
    model = MAE(tiny_config())
    with pytest.raises(ValueError, match="at least one visible patch"):
        model(torch.rand(1, 1, 28, 28), mask_ratio=0.99)
    with pytest.raises(TypeError, match="number"):
        random_masking(torch.zeros(1, 16, 4), "0.75")
    with pytest.raises(ValueError, match="28 x 28"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        model(torch.rand(1, 3, 28, 28))
    with pytest.raises(ValueError, match="noise must be"):
        model(torch.rand(2, 1, 28, 28), noise=torch.rand(2, 15))
    with pytest.raises(ValueError, match="divisible by 4"):
        tiny_config(dim=30, num_heads=3)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        tiny_config(patch_size=5)
    with pytest.raises(TypeError, match="MAEConfig"):
        MAE(mae_module.ViTConfig())
    with pytest.raises(ValueError, match="cannot be cut"):
        patchify(torch.rand(1, 1, 30, 30), 7)


# -- exercises -------------------------------------------------------------------------------------
def test_exercise_checkers_accept_the_package_and_reject_mistakes():
    ch19.check_random_masking(random_masking)
    ch19.check_masked_patch_loss(lambda p, x, m: masked_patch_loss(p, normalize_patches(x), m))
    ch19.check_merged_weight(lambda w, a, b, alpha: w + alpha / a.shape[0] * b @ a)
    with pytest.raises(ExerciseError, match="visible ones included"):
        ch19.check_masked_patch_loss(lambda p, x, m: ((p - normalize_patches(x)) ** 2).mean())
    with pytest.raises(ExerciseError):
        ch19.check_random_masking(lambda t, r, n: random_masking(t, r, -n))        # keeps the largest noise
    with pytest.raises(ExerciseError):
        ch19.check_merged_weight(lambda w, a, b, alpha: w + alpha * b @ a)         # forgot the 1/r
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch19.check_random_masking(lambda *args: (_ for _ in ()).throw(NotImplementedError))
