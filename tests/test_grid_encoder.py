"""Chapter 17's grid encoder: the CNN tower's token layout against a hand computation with torch's own
layers, its exact pretraining labels, the VLM taking it in place of a ViT, and bad inputs refused."""
import pytest
import torch
import torch.nn.functional as F

from mmtutorial.data import scenes
from mmtutorial.models.vlm import VLM, GridCNN, GridCNNConfig, VLMConfig
from mmtutorial.nn.positional import sincos_position_embedding_2d
from mmtutorial.zoo import scenes_grid_encoder as grid


def test_grid_cnn_tokens_equal_a_hand_computation():
    torch.manual_seed(0)
    tower = GridCNN(GridCNNConfig(image_size=32, channels=(8, 16, 16), dim=24)).eval()
    images = torch.randn(2, 3, 32, 32)
    x = images
    for block in tower.features:                                 # conv -> BN (running stats) -> ReLU -> pool
        conv, bn = block[0], block[1]
        x = F.conv2d(x, conv.weight, padding=1)
        x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)
        x = F.max_pool2d(F.relu(x), 2)                           # (2, C, H/2, W/2)
    cells = x.flatten(2).transpose(1, 2)                          # (2, 16, 16): row-major cells
    summary = F.linear(cells.mean(1, keepdim=True), tower.summary.weight, tower.summary.bias)
    expected = F.layer_norm(torch.cat([summary, F.linear(cells, tower.cell.weight, tower.cell.bias)], 1), (24,),
                            tower.norm.weight, tower.norm.bias, tower.norm.eps)
    positions = sincos_position_embedding_2d(4, 24)                 # (17, 24): zeros for the summary token
    torch.testing.assert_close(tower.forward_tokens(images), expected + positions)
    assert tower.config.num_tokens == 17 and tower.config.grid == 4
    plain = GridCNN(GridCNNConfig(image_size=32, channels=(8, 16, 16), dim=24, position_code="none")).eval()
    plain.load_state_dict(tower.state_dict())                      # the code is a buffer, not a weight
    torch.testing.assert_close(plain.forward_tokens(images), expected)


def test_sincos_2d_table_equals_transformers_vit_mae():
    from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding
    for grid_size, dim in ((4, 64), (7, 32), (2, 8)):
        reference = build_2d_sinusoidal_position_embedding(grid_size, grid_size, dim, cls_token=True)
        half = dim // 2                                             # MAE's released layout: column half first
        reference = torch.cat([reference[:, half:], reference[:, :half]], dim=1)
        torch.testing.assert_close(sincos_position_embedding_2d(grid_size, dim), reference)
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_position_embedding_2d(4, 30)
    with pytest.raises(ValueError, match="position_code"):
        GridCNNConfig(position_code="learned")


def test_every_cell_token_carries_its_own_position():
    # identical content in every cell (a blank image) -> the cell tokens differ only by their position code,
    # so "where" is readable from a token even though the convolutions are translation-equivariant
    tower = GridCNN(GridCNNConfig()).eval()
    tokens = tower.forward_tokens(torch.zeros(1, 3, 32, 32))[0]    # (17, 64)
    content = tokens[1:] - tower.position_code[1:]                 # (16, 64)
    interior = [5, 6, 9, 10]                                       # cells whose receptive field sees no border
    torch.testing.assert_close(content[interior], content[interior[:1]].expand(4, -1))
    assert torch.cdist(tokens[1:], tokens[1:]).add(torch.eye(16) * 1e3).min() > 0.1


def test_cell_tokens_are_local():
    # a change in one corner cell must not reach the token of the opposite corner (the receptive field of
    # three 3x3 conv + pool blocks is 22 px < the 24 px between the two cells)
    tower = GridCNN(GridCNNConfig()).eval()
    images = torch.randn(1, 3, 32, 32)
    changed = images.clone()
    changed[..., :8, :8] += 5.0
    a, b = tower.forward_tokens(images), tower.forward_tokens(changed)
    assert not torch.allclose(a[:, 1], b[:, 1])                   # top-left cell token changes
    torch.testing.assert_close(a[:, 16], b[:, 16])                # bottom-right cell token does not


def test_grid_targets_are_exact():
    scene_list = scenes.generate_scenes(30, split="train", seed=1)
    cells, counts = grid.grid_targets(scene_list)
    assert cells.shape == (30, 16, 3) and counts.shape == (30, 11)
    for n, scene in enumerate(scene_list):
        assert counts[n, 0] == len(scene.objects)
        assert counts[n, 1:1 + len(scenes.COLORS)].sum() == len(scene.objects)
        occupied = {(o.center[1] // 8) * 4 + o.center[0] // 8 for o in scene.objects}
        assert set(torch.nonzero(cells[n, :, 0]).flatten().tolist()) == occupied
        for obj in scene.objects:
            cell = (obj.center[1] // 8) * 4 + obj.center[0] // 8
            color = grid.CELL_FIELDS["color"][int(cells[n, cell, 0])]
            shape = grid.CELL_FIELDS["shape"][int(cells[n, cell, 1])]
            assert (color, shape) in {(o.color, o.shape) for o in scene.objects}


def test_vlm_takes_the_grid_encoder_and_freezes_it():
    vocab = scenes.caption_vocabulary()
    tower = GridCNN(GridCNNConfig())
    model = VLM(VLMConfig(vocab_size=len(vocab), max_seq_len=40, dim=32, num_layers=1, num_heads=2,
                          vision_dim=64, num_image_tokens=17), tower).train()
    assert not tower.training and not any(p.requires_grad for p in tower.parameters())
    tokens = torch.randint(0, len(vocab), (2, 10))
    logits, _ = model(tokens, images=torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10, len(vocab))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        GridCNNConfig(image_size=30)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        GridCNNConfig(dim=0)
    with pytest.raises(TypeError, match="GridCNNConfig"):
        GridCNN({"dim": 64})
    with pytest.raises(ValueError, match=r"images must be \(batch, 3, 32, 32\)"):
        GridCNN(GridCNNConfig()).forward_tokens(torch.randn(2, 3, 28, 28))
    vocab = scenes.caption_vocabulary()
    with pytest.raises(ValueError, match="config expects"):
        VLM(VLMConfig(vocab_size=len(vocab), max_seq_len=80, vision_dim=64, num_image_tokens=65),
            GridCNN(GridCNNConfig()))


def test_a_frozen_encoder_is_in_eval_mode_from_the_start():
    # with BatchNorm, an encoder left in training mode would normalise by each batch and change its own
    # running statistics while "frozen" features are computed
    tower = GridCNN(GridCNNConfig()).train()
    VLM(VLMConfig(vocab_size=80, max_seq_len=40, vision_dim=64, num_image_tokens=17), tower)
    assert not tower.training


def test_image_dependence_is_zero_for_the_blind_model_only():
    from mmtutorial.zoo import scenes_vlm
    torch.manual_seed(0)
    vocab = scenes.caption_vocabulary()
    tower = GridCNN(GridCNNConfig())
    encoder = grid.ScenesGridEncoder(grid.GridEncoder(tower).eval(), None, torch.zeros(1, 3, 1, 1),
                                     torch.ones(1, 3, 1, 1), vocab)
    model = VLM(VLMConfig(vocab_size=len(vocab), max_seq_len=60, vision_dim=64, num_image_tokens=17), tower).eval()
    scene_list = scenes.generate_scenes(6, split="test", seed=2)
    examples = scenes_vlm.sample_questions(scene_list, 1, 0)
    seeing = scenes_vlm.ScenesVLM(model, {}, encoder, blind=False)
    blind = scenes_vlm.ScenesVLM(model, {}, encoder, blind=True)
    assert scenes_vlm.image_dependence(blind, scene_list, examples) == 0.0
    assert scenes_vlm.image_dependence(seeing, scene_list, examples) > 0.0
    losses_blind = scenes_vlm.answer_loss(blind, scene_list, examples)
    assert set(losses_blind) <= {*scenes_vlm.KINDS, "all"} and losses_blind["all"] > 0
