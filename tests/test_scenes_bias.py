"""The biased-scenes recipe of chapter 24 (mmtutorial.zoo.scenes_bias): selection, re-balancing, measurement."""
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from mmtutorial.data import scenes
from mmtutorial.zoo import scenes_bias


def test_training_scenes_have_the_requested_correlation():
    recipe = replace(scenes_bias.bias_recipe(), train_count=600, correlation=0.8)
    chosen = scenes_bias.biased_training_scenes(recipe)
    assert len(chosen) == 600 and all(len(scene) == 1 for scene in chosen)
    aligned = np.mean([scenes_bias.BIAS_COLORS[s.objects[0].shape] == s.objects[0].color for s in chosen])
    assert abs(aligned - 0.8) < 0.05
    assert {s.objects[0].shape for s in chosen} == set(scenes.SHAPES)
    assert [s.objects[0].pair for s in chosen[:50]] == \
        [s.objects[0].pair for s in scenes_bias.biased_training_scenes(recipe)[:50]]        # seeded
    with pytest.raises(ValueError, match="correlation"):
        scenes_bias.biased_training_scenes(replace(recipe, correlation=1.0))


def test_group_balanced_indices_equalise_the_groups():
    recipe = replace(scenes_bias.bias_recipe(), train_count=800)
    chosen = scenes_bias.biased_training_scenes(recipe)
    indices = scenes_bias.group_balanced_indices(chosen, seed=0)
    assert indices.shape == (800,) and indices.min() >= 0 and indices.max() < 800
    groups = Counter(chosen[i].objects[0].pair for i in indices)
    present = {s.objects[0].pair for s in chosen}
    assert set(groups) <= present
    assert max(groups.values()) < 3 * (800 / len(present))           # no group dominates any more
    with pytest.raises(ValueError, match="at least one"):
        scenes_bias.group_balanced_indices([])


def test_bad_balance_and_bad_test_sets_are_refused():
    with pytest.raises(ValueError, match="balance"):
        scenes_bias.load_or_train_bias_clip("reweight")
    two_objects = scenes.generate_scenes(4, scenes.SceneConfig(min_objects=2, max_objects=2))
    with pytest.raises(ValueError, match="one-object"):
        scenes_bias.shape_accuracy_by_alignment(None, two_objects)
    assert scenes_bias.shape_caption(scenes.single_object_scenes(1)[0]).startswith("a ")
