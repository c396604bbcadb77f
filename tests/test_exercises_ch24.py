"""Chapter 24's exercise checkers accept right answers and reject typical wrong ones with a hint."""
import numpy as np
import pytest
import torch

from mmtutorial.exercises import ExerciseError, ch24


def test_grad_cam_checker():
    ch24.check_grad_cam_from_maps(lambda a, g: (g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1).clamp(min=0))
    with pytest.raises(ExerciseError, match="clamp negatives"):                 # forgot the ReLU
        ch24.check_grad_cam_from_maps(lambda a, g: (g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1))


def test_clip_checker():
    ch24.check_clip_gradients(lambda rows, c: rows * (c / rows.norm(dim=1, keepdim=True)).clamp(max=1.0))
    with pytest.raises(ExerciseError, match="each example separately"):        # clipped the whole batch
        ch24.check_clip_gradients(lambda rows, c: rows * min(1.0, c / float(rows.norm())))


def test_membership_auc_checker():
    def auc(members, others):
        members, others = np.asarray(members)[:, None], np.asarray(others)[None, :]
        return float((members < others).mean() + 0.5 * (members == others).mean())
    ch24.check_membership_auc(auc)
    with pytest.raises(ExerciseError, match="MINUS the loss"):
        ch24.check_membership_auc(lambda m, o: 1.0 - auc(m, o))
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        def stub(m, o):
            raise NotImplementedError
        ch24.check_membership_auc(stub)
