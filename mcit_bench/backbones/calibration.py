"""What a built backbone can tell apart before any task is trained: nearest-prototype task routing.

MAny's CPM and ModalPrompt's image guidance pick a task from the image. Whether that is possible at all
is a property of the benchmark and the frozen vision tower, measured here the way CPM routes: each task's
prototype is the mean of its training images' pooled vision features (patch tokens averaged, the layer
the LLaVA config selects), and a test image goes to the prototype of highest cosine similarity.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def nearest_prototype_accuracy(train: dict[str, torch.Tensor], test: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per task, the share (%) of its test features [N, D] whose nearest prototype (cosine, prototype =
    mean of the task's train features) is the task's own."""
    names = list(train)
    prototypes = F.normalize(torch.stack([train[name].float().mean(0) for name in names]), dim=-1)
    accuracy = {}
    for name, feats in test.items():
        picked = (F.normalize(feats.float(), dim=-1) @ prototypes.T).argmax(-1)
        accuracy[name] = 100.0 * (picked == names.index(name)).float().mean().item()
    return accuracy


@torch.no_grad()
def pooled_vision_features(backbone: Any, images: list, batch: int = 128) -> torch.Tensor:
    """[N, Dv]: the frozen vision features of ``images``, patch tokens averaged."""
    out = []
    for start in range(0, len(images), batch):
        pixels = backbone.processor.image_processor(images[start:start + batch], return_tensors="pt")["pixel_values"]
        out.append(backbone.vision_features(pixels).float().mean(dim=1))
    return torch.cat(out)


def routing_calibration(backbone: Any, benchmark: Any, n_train: int = 200, n_test: int = 100) -> dict[str, float]:
    """Nearest-prototype routing accuracy (%) per task of ``benchmark`` on ``backbone``'s frozen vision tower:
    prototypes from the first ``n_train`` training images of each task, scored on ``n_test`` test images."""
    train, test = {}, {}
    for task in benchmark.tasks:
        train_split, test_split = benchmark.train_split(task.name), benchmark.test_split(task.name)
        train[task.name] = pooled_vision_features(backbone, [train_split[i]["image"] for i in range(min(n_train, len(train_split)))])
        test[task.name] = pooled_vision_features(backbone, [test_split[i]["image"] for i in range(min(n_test, len(test_split)))])
    return nearest_prototype_accuracy(train, test)


BUILTIN_TRAIN, BUILTIN_TEST = 200, 100  # images per task behind the built-in benchmark's routing figure


def builtin_routing(backbone: Any) -> dict[str, float]:
    """Routing accuracy (%) per task of the built-in benchmark: what `backbone build` prints. Only the records
    used are generated (a record depends on its index, not on the split size)."""
    from ..benchmark import load_benchmark

    benchmark = load_benchmark("synthetic", train_size=BUILTIN_TRAIN, test_size=BUILTIN_TEST)
    return routing_calibration(backbone, benchmark, BUILTIN_TRAIN, BUILTIN_TEST)
