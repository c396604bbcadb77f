"""Synthetic moving-shape clips (chapter 21): shapes, labels, reversal pairs and the claim that time is the
only clue (no single frame and no order-invariant statistic separates the labels)."""
import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from mmtutorial.data import clips, scenes


@pytest.fixture(scope="module")
def direction_set():
    return clips.direction_clips(2000, split="train", seed=3)


def test_tensors_shapes_and_labels(direction_set):
    videos, labels = clips.to_tensors(direction_set[:10])
    config = clips.ClipConfig()
    assert videos.shape == (10, config.num_frames, 3, config.image_size, config.image_size)
    assert videos.dtype == torch.float32 and 0.0 <= float(videos.min()) and float(videos.max()) <= 1.0
    assert labels.dtype == torch.int64 and labels.tolist() == [c.label for c in direction_set[:10]]


def test_pairs_are_time_reversals_with_opposite_labels(direction_set):
    for first, second in zip(direction_set[0::2][:50], direction_set[1::2][:50]):
        np.testing.assert_array_equal(second.frames, first.frames[::-1])
        assert clips.DIRECTIONS[second.label] == clips.OPPOSITE[clips.DIRECTIONS[first.label]]
        twice = clips.reverse_clip(clips.reverse_clip(first))
        np.testing.assert_array_equal(twice.frames, first.frames)
        assert twice.label == first.label and twice.caption() == first.caption()


def test_motion_is_exact(direction_set):
    for clip in direction_set[:200]:
        dx, dy = clips.VELOCITY[clips.DIRECTIONS[clip.label]]
        steps = np.diff(clip.centers[:, 0], axis=0)                       # (T - 1, 2)
        assert (steps == clip.speed * np.array([dx, dy])).all()
        # every frame shows the whole shape at its centre
        radius = clip.objects[0].radius
        for t, (x, y) in enumerate(clip.centers[:, 0].tolist()):
            assert radius <= x < clip.frames.shape[2] - radius and radius <= y < clip.frames.shape[1] - radius
            assert tuple(clip.frames[t, y, x]) == scenes.COLORS[clip.objects[0].color]


def test_start_positions_are_uniform(direction_set):
    """Start positions along the motion are uniform over every start that keeps the path inside."""
    config = clips.ClipConfig()
    low, high = config.radius, config.image_size - 1 - config.radius
    for direction in ("right", "down"):
        axis = 0 if direction == "right" else 1
        starts = [c.centers[0, 0, axis] for c in direction_set
                  if clips.DIRECTIONS[c.label] == direction and c.speed == 1]
        travel = config.num_frames - 1
        counts = np.bincount(np.asarray(starts) - low, minlength=high - travel - low + 1)
        assert len(counts) == high - travel - low + 1 and counts.min() > 0       # the whole range, nothing else
        assert chisquare(counts).pvalue > 1e-3


def test_no_single_frame_separates_left_from_right(direction_set):
    """In a paired split the frames of the 'left' clips are exactly the frames of the 'right' clips (as a
    multiset), and frame t of one label is distributed as frame T-1-t of the other."""
    def frames_of(direction):
        return np.concatenate([c.frames for c in direction_set if clips.DIRECTIONS[c.label] == direction])

    for a, b in (("left", "right"), ("up", "down")):
        fa, fb = frames_of(a), frames_of(b)
        key = lambda frames: sorted(f.tobytes() for f in frames)
        assert key(fa) == key(fb)
    # A statistic of the set of frames (the mean frame) is identical for a clip and its reversal.
    videos, _ = clips.to_tensors(direction_set[:20])
    torch.testing.assert_close(videos.mean(dim=1), videos.flip(1).mean(dim=1))


def test_order_clips():
    config = clips.ClipConfig()
    order = clips.order_clips(200, split="test", seed=1)
    for first, second in zip(order[0::2], order[1::2]):
        np.testing.assert_array_equal(second.frames, first.frames[::-1])
        assert second.label == 1 - first.label
    for clip in order:
        moving = np.abs(np.diff(clip.centers[:, :, 0], axis=0)) > 0       # (T - 1, 2): who moves at each step
        mover_first = 0 if clip.label == 0 else 1
        assert moving[:config.order_steps, mover_first].all() and not moving[:config.order_steps, 1 - mover_first].any()
        assert moving[:, 0].sum() == moving[:, 1].sum() == config.order_steps    # symmetric in time
        assert not moving[config.order_steps].any()                               # the pause
        assert (clip.centers[:, 0, 1] < config.image_size // 2).all() and (clip.centers[:, 1, 1] >= config.image_size // 2).all()
    assert "moves before" in order[0].caption()


def test_determinism_and_splits():
    a = clips.direction_clips(6, split="train", seed=0)
    b = clips.direction_clips(6, split="train", seed=0)
    c = clips.direction_clips(6, split="test", seed=0)
    assert all((x.frames == y.frames).all() for x, y in zip(a, b))
    assert not all((x.frames == y.frames).all() for x, y in zip(a, c))
    unpaired = clips.direction_clips(5, paired=False)
    assert len(unpaired) == 5


def test_captions_and_vocabulary():
    assert clips.caption("red", "circle", "left") == "a red circle moving left"
    captions = clips.all_captions()
    assert len(captions) == len(set(captions)) == 6 * 4 * 4
    vocab = clips.caption_vocabulary()
    for text in captions:
        assert vocab.unk_id not in vocab.encode(text) and vocab.decode(vocab.encode(text)) == text
    # the scenes' words keep their ids
    assert vocab.tokens[:len(scenes.caption_vocabulary())] == scenes.caption_vocabulary().tokens


@pytest.mark.parametrize("kwargs, error", [
    ({"num_frames": 1}, ValueError), ({"num_frames": 2.0}, TypeError), ({"speeds": (5,)}, ValueError),
    ({"colors": ("pink",)}, ValueError), ({"radius": 0}, ValueError), ({"order_steps": 4}, ValueError),
    ({"speeds": 1}, TypeError)])
def test_bad_configs_refused(kwargs, error):
    with pytest.raises(error):
        clips.ClipConfig(**kwargs)


def test_bad_calls_refused():
    with pytest.raises(ValueError, match="even"):
        clips.direction_clips(3)
    with pytest.raises(ValueError, match="split"):
        clips.direction_clips(2, split="holdout")
    with pytest.raises(ValueError):
        clips.to_tensors([])
    with pytest.raises(TypeError):
        clips.to_tensors([np.zeros((8, 20, 20, 3))])
    with pytest.raises(ValueError):
        clips.caption("red", "circle", "sideways")
