"""The training collator's encoding cache: a hit gives the batch a fresh encoding gives, images may
arrive undecoded (``datasets.Image(decode=False)``), and the memory budget is respected."""
from __future__ import annotations

import datasets
import torch

from mcit_bench.backbones.llava import Backbone
from mcit_bench.benchmarks.synthetic import load_synthetic
from mcit_bench.collate import Collator


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        else:
            assert a[key] == b[key], key


def test_cached_batches_equal_fresh_ones(tiny_backbone):
    backbone = Backbone.from_pretrained(tiny_backbone)
    data = load_synthetic(train_size=12, test_size=4).train_split("scene_caption")
    raw = data.cast_column("image", datasets.Image(decode=False))
    assert isinstance(raw[0]["image"], dict)  # bytes, not a PIL image: the collator decodes
    fresh = Collator(backbone.processor, backbone.template, train=True)
    cached = Collator(backbone.processor, backbone.template, train=True, cache_mb=64)
    decoded = [data[i] for i in (0, 1, 2, 3)]
    undecoded = [raw[i] for i in (0, 1, 2, 3)]
    first = cached(undecoded)
    assert len(cached._cache) == 4
    _assert_same(first, fresh(decoded))
    # A second batch mixing hits and misses, in another order.
    mixed = [raw[i] for i in (3, 5, 0, 7)]
    _assert_same(cached(mixed), fresh([data[i] for i in (3, 5, 0, 7)]))
    assert len(cached._cache) == 6
    assert (cached(mixed)["labels"] != -100).any()  # answers are part of the cached entry
    cached.clear_cache()  # the runner does this per training stage
    assert not cached._cache and cached._cached_bytes == 0
    _assert_same(cached(mixed), fresh([data[i] for i in (3, 5, 0, 7)]))


def test_cache_budget_and_eval_keys(tiny_backbone):
    backbone = Backbone.from_pretrained(tiny_backbone)
    data = load_synthetic(train_size=8, test_size=4).train_split("styles")
    records = [data[i] for i in range(8)]
    one = Collator(backbone.processor, backbone.template, train=True, cache_mb=64)
    one(records[:1])
    entry_bytes = one._cached_bytes
    small = Collator(backbone.processor, backbone.template, train=True, cache_mb=2.5 * entry_bytes / 2**20)
    small(records)
    assert len(small._cache) == 2 and small._cached_bytes <= small.cache_bytes
    off = Collator(backbone.processor, backbone.template, train=True)
    off(records)
    assert not off._cache  # cache_mb 0: nothing kept
    # Records without a uid are never cached (their identity is unknown).
    anonymous = Collator(backbone.processor, backbone.template, train=True, cache_mb=64)
    anonymous([{**r, "uid": ""} for r in records[:2]])
    assert not anonymous._cache


def test_left_pad_by_hand() -> None:
    import torch

    from mcit_bench.collate import IGNORE_INDEX, left_pad

    out = left_pad([[5, 6, 7], [8]], [[IGNORE_INDEX, 6, 7], [8]], pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert out["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [IGNORE_INDEX, IGNORE_INDEX, 8]]
    assert all(t.dtype == torch.long for t in out.values())
