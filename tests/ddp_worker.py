"""Run under torchrun: trains the shared problem data-parallel and saves rank 0's weights."""
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _training_problem import make_model, make_problem  # noqa: E402

from mmtutorial.training import TrainConfig, cleanup_distributed, fit, is_main_process  # noqa: E402

torch.set_num_threads(1)
model = make_model()
fit(model, make_problem(), config=TrainConfig(epochs=2, batch_size=32, lr=0.05, optimizer="momentum",
                                              schedule="cosine", progress=False), device="cpu")
if is_main_process():
    torch.save(model.state_dict(), sys.argv[1])
cleanup_distributed()
