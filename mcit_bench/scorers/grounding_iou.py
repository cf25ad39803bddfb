"""CoIN Grounding: a predicted box is correct when its IoU with the gold box exceeds 0.5.

Boxes are [x1, y1, x2, y2] normalised to the PADDED SQUARE image (LLaVA pads the shorter side
to a square, centred, before encoding), which is how CoIN's `answer_bbox` is written.
Converters holding pixel [x, y, w, h] boxes use `xywh_to_padded_square`.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

from mcit_bench.errors import UserError
from mcit_bench.scorers.base import AccuracyScorer

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def xywh_to_padded_square(bbox: Sequence[float], image_size: Sequence[float]) -> list[float]:
    """Pixel [x, y, w, h] in a (width, height) image -> [x1, y1, x2, y2] in the padded square,
    divided by its side max(width, height). The image sits centred on the longer side."""
    x, y, w, h = (float(v) for v in bbox)
    width, height = float(image_size[0]), float(image_size[1])
    side = max(width, height)
    dx = (side - width) / 2.0
    dy = (side - height) / 2.0
    return [(x + dx) / side, (y + dy) / side, (x + w + dx) / side, (y + h + dy) / side]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two [x1, y1, x2, y2] boxes, CoIN's formula: the intersection is clamped at 0, the
    areas are NOT (an inverted box has a negative area); 0 when the union is not positive."""
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def parse_box_coin(text: str) -> Optional[list[float]]:
    """CoIN's parser: drop ONE leading space, delete '[' and ']', then drop the first AND the last
    character of what is left (text[1:-1]), split on ',' and float() each part; exactly four
    numbers or None. E.g. "[0.1, 0.2, 0.3, 0.45]" -> "0.1, 0.2, 0.3, 0.45" -> ".1, 0.2, 0.3, 0.4":
    a first number written "0.x" survives, the last number loses its final character."""
    if text[:1] == " ":
        text = text[1:]
    text = text.replace("[", "").replace("]", "")
    try:
        values = [float(part) for part in text[1:-1].split(",")]
    except ValueError:
        return None
    return values if len(values) == 4 else None


def parse_box_robust(text: str) -> Optional[list[float]]:
    """The first four numbers anywhere in the text, each axis ordered (min, max); else None."""
    nums = [float(m) for m in _NUMBER.findall(text)[:4]]
    if len(nums) < 4:
        return None
    x1, y1, x2, y2 = nums
    return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]


def gold_box(record: dict) -> list[float]:
    """record["bbox"]: four numbers, or CoIN's "[x1,y1,x2,y2]" string."""
    raw = record.get("bbox")
    try:
        if isinstance(raw, str):
            values = [float(v) for v in raw.replace("[", "").replace("]", "").split(",")]
        else:
            values = [float(v) for v in raw]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4:
        raise UserError(
            f"scorer grounding_iou: record {record.get('uid', '?')} needs 'bbox' = [x1, y1, x2, y2] "
            f"normalised to the padded square image, got {raw!r}"
        )
    return values


class GroundingIoU(AccuracyScorer):
    """Accuracy of IoU(pred, gold) > 0.5; an unparseable prediction is wrong.

    Variants:
      coin_compat: CoIN's parser (`parse_box_coin`), which mangles the first and last characters.
      robust:      the first four numbers in the prediction (`parse_box_robust`).
    Like CoIN, both boxes are scaled by max(image_size) when the record has one (it does not
    change the IoU beyond rounding, kept so borderline cases round the same way).
    """

    name = "grounding_iou"
    variants = ("coin_compat", "robust")

    def is_correct(self, prediction: str, record: dict) -> bool:
        gold = gold_box(record)
        pred = parse_box_coin(prediction) if self.variant == "coin_compat" else parse_box_robust(prediction)
        if pred is None:
            return False
        size = record.get("image_size")
        if isinstance(size, (list, tuple)) and len(size) == 2:
            side = max(float(size[0]), float(size[1]))
            pred = [v * side for v in pred]
            gold = [v * side for v in gold]
        return iou(pred, gold) > 0.5
