"""UCIT (HiDe-LLaVA, ACL 2025; used by MAny, MCITlib, Prism) read from its native release files.

Canonical order: ImageNet-R -> ArxivQA -> VizWiz-caption -> IconQA -> CLEVR-Math -> Flickr30k (the task
orders task_orders/order1..6.yaml index this order; order 1 is it).

Accepted layouts (``--data-root``; ``--image-root`` overrides the image folder):

* the audited release: ``<root>/instructions/<Task>/...`` and ``<root>/datasets/`` as the image root;
* the HF dataset HaiyangGuo/UCIT as downloaded: ``<root>/<Task>/...`` (images under ``--image-root``, or
  ``<root>`` itself as in MCITlib's ``/your_data_path/UCIT``);
* a folder written by ``mcit-bench convert ucit`` (``benchmark.json``): read back as is.

Task folders may be named ImageNet-R, ArxivQA, VizWiz | VizWiz-caption, IconQA, CLEVR | CLEVR-Math,
Flickr30k | Flickr30k-cap; files ``train*.json`` / ``test_3000.json`` or MCITlib's ``train.json`` /
``test.json``; captions' references ``val_coco_type_3000.json``. Image paths in records are relative to the
image root; their first folder may use any alias of the task's folder name.

Records: train = LLaVA conversations, every answer trained (the ``<image>`` token is removed from the
instructions and put back by the template); ids are not unique (VizWiz, Flickr30k, CLEVR), so uids are
``ucit/<task>/train/<index>``.
Test = {question_id, image, text, answer}; ``text`` is passed through verbatim; question_id must be
unique per file; uid ``ucit/<task>/test/<question_id>``. Caption tasks: the references of test record i
are the annotations of ``images[i]`` (id i+1, file_name = the test image's basename).

Validation (before any training): a missing file or image, a duplicate test id, a count different from
the release's (relax with ``strict_counts=False`` / ``--set strict_counts=false``), a caption reference
file_name or id mismatch, fewer than 5 references per caption image (strict) -> UserError.

Evaluation as the native pipeline: vicuna_v1 template, ``<image>\\n`` + text, greedy, max_new_tokens 128,
output stripped; exact match (case-insensitive) or the 7-metric caption score (no SPICE).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcit_bench.benchmark import Benchmark, TaskSpec
from mcit_bench.errors import UserError

from .native import (ImageIndex, NativeData, check_count, check_unique, conversation_record, conversation_turns,
                     find_dir, find_file, make_benchmark, later_turns, native_id, open_release, read_json,
                     read_json_list, record, require_keys, write_canonical)

NAME = "ucit"
TEMPLATE = "vicuna_v1"
MAX_NEW_TOKENS = 128  # the native evaluation scripts' budget
TEST_FILES = ("test_3000.json", "test.json")
REFS_FILE = "val_coco_type_3000.json"
N_TEST = 3000
N_REFS_PER_IMAGE = 5


@dataclass(frozen=True)
class UcitTask:
    name: str
    folders: tuple[str, ...]  # folder aliases, the release's name first
    train_files: tuple[str, ...]
    n_train: int
    caption: bool = False


TASKS_NATIVE = (
    UcitTask("ImageNet-R", ("ImageNet-R", "ImageNet_R", "imagenet-r"), ("train.json",), 23998),
    UcitTask("ArxivQA", ("ArxivQA", "arxivqa"), ("train_4w.json", "train.json"), 40000),
    UcitTask("VizWiz-caption", ("VizWiz", "VizWiz-caption", "VizWiz_caption", "VizWiz-Caption"), ("train.json",),
             40000, caption=True),
    UcitTask("IconQA", ("IconQA", "iconqa"), ("train.json",), 29859),
    UcitTask("CLEVR-Math", ("CLEVR", "CLEVR-Math", "CLEVR_Math", "clevr-math"), ("train_4w.json", "train.json"), 40000),
    UcitTask("Flickr30k", ("Flickr30k", "Flickr30k-cap", "Flickr30k_cap", "flickr30k"),
             ("train_brief_4w.json", "train.json"), 40000, caption=True),
)

TASKS: list[TaskSpec] = [
    TaskSpec(t.name, t.name, "caption" if t.caption else "exact_match", "auto" if t.caption else "ucit",
             max_new_tokens=MAX_NEW_TOKENS,
             description=("caption; mean of BLEU-1..4, METEOR, ROUGE-L, CIDEr (x100), 5 references"
                          if t.caption else "case-insensitive exact match"))
    for t in TASKS_NATIVE
]


def locate(data_root: Path, image_root: Path | None) -> tuple[Path, Path]:
    """(instructions folder, image root) of a native UCIT download."""
    if not data_root.is_dir():
        raise UserError(f"--data-root {str(data_root)!r}: not a folder")
    instructions = data_root / "instructions" if (data_root / "instructions").is_dir() else data_root
    if image_root is None:
        image_root = data_root / "datasets" if (data_root / "datasets").is_dir() else data_root
    elif not image_root.is_dir():
        raise UserError(f"--image-root {str(image_root)!r}: not a folder")
    return instructions, image_root


def read_native(data_root: Path, image_root: Path | None = None, strict_counts: bool = True) -> NativeData:
    instructions, image_root = locate(data_root, image_root)
    images = ImageIndex(image_root, [t.folders for t in TASKS_NATIVE])
    records: dict[str, dict[str, list]] = {}
    sources: dict[str, list[Path]] = {}
    later: dict[str, int] = {}  # answers beyond each conversation's first
    for task in TASKS_NATIVE:
        folder = find_dir(instructions, task.folders, f"UCIT task {task.name}")
        train_path = find_file(folder, task.train_files, "train")
        test_path = find_file(folder, TEST_FILES, "test")
        train = _read_train(train_path, task, images)
        later[task.name] = later_turns(train)
        check_count(len(train), task.n_train, train_path, strict_counts)
        test = _read_test(test_path, task, images)
        check_count(len(test), N_TEST, test_path, strict_counts)
        sources[task.name] = [train_path, test_path]
        if task.caption:
            refs_path = find_file(folder, (REFS_FILE,), "caption reference")
            _attach_references(test, refs_path, strict_counts)
            sources[task.name].append(refs_path)
        records[task.name] = {"train": train, "test": test}
    info = {"strict_counts": strict_counts, "later_turns_trained": later}
    return NativeData(NAME, list(TASKS), records, image_root, sources, info)


def _read_train(path: Path, task: UcitTask, images: ImageIndex) -> list:
    rows = []
    for index, raw in enumerate(read_json_list(path)):
        nid = native_id(raw, ("id", "question_id"), path, index)
        if not isinstance(raw.get("image"), str):
            raise UserError(f"{path}: record {index} (id {nid}) has no 'image' path")
        exchanges = conversation_turns(raw, path, index)
        rows.append(conversation_record(f"{NAME}/{task.name}/train/{index}", nid, index,
                                        images.resolve(raw["image"], path, index), exchanges))
    return rows


def _read_test(path: Path, task: UcitTask, images: ImageIndex) -> list:
    raw_rows = read_json_list(path)
    rows = []
    for index, raw in enumerate(raw_rows):
        require_keys(raw, ("question_id", "image", "text", "answer"), path, index)
        if "<image>" in raw["text"]:
            raise UserError(f"{path}: record {index} (question_id {raw['question_id']}): 'text' holds an <image> "
                            f"token; UCIT test texts have none (the pipeline adds it)")
        nid = str(raw["question_id"])
        rows.append(record(f"{NAME}/{task.name}/test/{nid}", nid, index, images.resolve(raw["image"], path, index),
                           raw["text"], str(raw["answer"])))
    check_unique([r["native_id"] for r in rows], path, "question_id")
    return rows


def _attach_references(test: list, path: Path, strict: bool) -> None:
    """References of test record i = captions of ``images[i]`` (COCO format, ids 1..N in test-file order)."""
    coco = read_json(path)
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) or \
            not isinstance(coco.get("annotations"), list):
        raise UserError(f"{path}: expected COCO captions format with 'images' and 'annotations' lists")
    entries = coco["images"]
    if len(entries) != len(test):
        raise UserError(f"{path}: {len(entries)} images but the test file has {len(test)} records "
                        f"(references are matched by position)")
    captions: dict[Any, list[str]] = {}
    for ann in coco["annotations"]:
        captions.setdefault(ann.get("image_id"), []).append(str(ann.get("caption", "")))
    for i, (entry, row) in enumerate(zip(entries, test)):
        expected_name = Path(row["image"]).name
        if entry.get("id") != i + 1:
            raise UserError(f"{path}: images[{i}].id is {entry.get('id')!r}, expected {i + 1} (test-file order)")
        if entry.get("file_name") != expected_name:
            raise UserError(f"{path}: images[{i}].file_name is {entry.get('file_name')!r} but test record {i} "
                            f"(question_id {row['native_id']}) has image {expected_name!r}")
        refs = captions.get(entry["id"], [])
        if not refs or (strict and len(refs) != N_REFS_PER_IMAGE):
            raise UserError(f"{path}: image id {entry['id']} has {len(refs)} reference captions, expected "
                            f"{N_REFS_PER_IMAGE}")
        row["references"] = refs


def _native_data(data_root: str | Path | None, image_root: str | Path | None, strict_counts: bool) -> NativeData:
    return open_release(NAME, data_root, image_root, strict_counts, read_native)


def load_ucit(data_root: str | Path | None = None, image_root: str | Path | None = None,
              train_size: int | None = None, test_size: int | None = None, strict_counts: bool = True,
              stream: str = "report", **_: Any) -> Benchmark:
    """UCIT from the native release (or a converted folder); sizes None = every record."""
    data = _native_data(data_root, image_root, strict_counts)
    return make_benchmark(data, train_size, test_size, TEMPLATE, stream)


def convert_ucit(data_root: str | Path, output: str | Path, image_root: str | Path | None = None,
                 strict_counts: bool = True) -> Path:
    """Validate the native release and write the canonical on-disk format to ``output``."""
    data = _native_data(data_root, image_root, strict_counts)
    return write_canonical(data, Path(output).expanduser(), Path(data_root).expanduser(), TEMPLATE)
