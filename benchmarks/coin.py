"""CoIN (zackschen/CoIN; used by ModalPrompt) read from its native release files.

Order: ScienceQA -> TextVQA -> ImageNet -> GQA -> VizWiz -> Grounding -> VQAv2 -> OCR-VQA
(``task_orders/coin/order1.yaml``; CoIN publishes this one order).

Accepted layouts (``--data-root``; ``--image-root`` overrides the image folder):

* a CoIN checkout: ``<root>/playground/Instructions_Original/<Task>/`` and ``<root>/cl_dataset/`` (images
  and the extra ground truth, as CoIN's scripts read them);
* the instruction download itself: ``<root>/{Instructions_Original | Instruction_Type1 | Instructions_Type1 |
  Instructions}/<Task>/`` or ``<root>/<Task>/``, images under ``<root>/cl_dataset``, ``<root>/datasets``,
  ``--image-root`` or ``<root>``;
* a folder written by ``mcit-bench convert coin`` (``benchmark.json``).

Files per task: ``train.json`` and the file CoIN's evaluation scripts read: ``test.json`` (ScienceQA,
ImageNet, GQA, Grounding, OCRVQA) or ``val.json`` (TextVQA, VizWiz, VQAv2). Test records:
{question_id, image?, text, answer?, answer_bbox?, size?}; ``text`` is passed through verbatim.
Extra ground truth (looked up in ``<image root>/<Task>/``, then ``<instructions>/<Task>/``):
ScienceQA ``problems.json`` + ``pid_splits.json`` (answer index -> letter, the choices), TextVQA
``TextVQA_0.5.1_val.json`` (the 10 human answers), GQA ``testdev_balanced_questions.json`` (answers).

Records without ``image`` (text-only ScienceQA questions) stay text-only, as in LLaVA/CoIN.

Scorers (native quirks as named variants of mcit_bench.scorers): scienceqa/coin, vqa_soft/textvqa,
imagenet_substring/coin (by position), gqa/coin, vqa_exact/coin (VizWiz, VQAv2), grounding_iou/coin_compat,
ocrvqa/coin.

ScienceQA's denominator (scienceqa/coin) is every test problem of pid_splits.json, as CoIN's scorer: with
``strict_counts`` (the default) test.json must hold them all; relaxed, a test problem test.json lacks becomes
an ``absent`` placeholder record, never generated for, scored as failed (scienceqa/coin_skip_absent leaves
it out instead: ``--scorer-variant ScienceQA=coin_skip_absent``); info and summary.json count them.

Reconstructed: the release's record counts are not in the project's reference, so counts are not checked
except ScienceQA's test file against pid_splits.json's test split (strict). ``max_new_tokens``: 1024 where
CoIN's scripts use model_vqa.py (ImageNet, Grounding, VQAv2) and 128 for VizWiz (model_vizwiz.py); ScienceQA
1024 and TextVQA, GQA, OCR-VQA 128 follow LLaVA's model_vqa_science / model_vqa_loader defaults (their CoIN
scripts are not in the release). ``--set eval_max_new_tokens=128`` caps all tasks (faster, may truncate
babbling answers that the substring scorer would count).
Every answer of a multi-turn training conversation is trained (LLaVA's mixture behind GQA, VQAv2, OCR-VQA and
Grounding holds several question-answer pairs per image), the earlier exchanges as context.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcit_bench.benchmark import Benchmark, TaskSpec
from mcit_bench.errors import UserError

from .native import (ImageIndex, NativeData, check_unique, conversation_record, conversation_turns, find_dir,
                     find_file, find_optional, make_benchmark, later_turns, native_id, open_release, read_json,
                     read_json_list, record, require_keys, write_canonical)

NAME = "coin"
TEMPLATE = "vicuna_v1"
LETTERS = "ABCDE"
INSTRUCTION_FOLDERS = ("playground/Instructions_Original", "Instructions_Original", "Instruction_Original",
                       "Instructions_Type1", "Instruction_Type1", "Instructions", "instructions")
IMAGE_FOLDERS = ("cl_dataset", "datasets")


@dataclass(frozen=True)
class CoinTask:
    name: str
    folders: tuple[str, ...]
    test_files: tuple[str, ...]
    scorer: str
    variant: str
    max_new_tokens: int


TASKS_NATIVE = (
    CoinTask("ScienceQA", ("ScienceQA",), ("test.json",), "scienceqa", "coin", 1024),
    CoinTask("TextVQA", ("TextVQA",), ("val.json", "test.json"), "vqa_soft", "textvqa", 128),
    CoinTask("ImageNet", ("ImageNet",), ("test.json",), "imagenet_substring", "coin", 1024),
    CoinTask("GQA", ("GQA",), ("test.json",), "gqa", "coin", 128),
    CoinTask("VizWiz", ("VizWiz",), ("val.json", "test.json"), "vqa_exact", "coin", 128),
    CoinTask("Grounding", ("Grounding",), ("test.json",), "grounding_iou", "coin_compat", 1024),
    CoinTask("VQAv2", ("VQAv2",), ("val.json", "test.json"), "vqa_exact", "coin", 1024),
    CoinTask("OCR-VQA", ("OCRVQA", "OCR-VQA", "OCR_VQA"), ("test.json",), "ocrvqa", "coin", 128),
)

TASKS: list[TaskSpec] = [TaskSpec(t.name, t.name, t.scorer, t.variant, max_new_tokens=t.max_new_tokens)
                         for t in TASKS_NATIVE]


def locate(data_root: Path, image_root: Path | None) -> tuple[Path, Path]:
    if not data_root.is_dir():
        raise UserError(f"--data-root {str(data_root)!r}: not a folder")
    instructions = next((data_root / f for f in INSTRUCTION_FOLDERS if (data_root / f).is_dir()), data_root)
    if image_root is None:
        image_root = next((data_root / f for f in IMAGE_FOLDERS if (data_root / f).is_dir()), data_root)
    elif not image_root.is_dir():
        raise UserError(f"--image-root {str(image_root)!r}: not a folder")
    return instructions, image_root


class _Truth:
    """The extra ground-truth files, found beside the images (CoIN's cl_dataset) or the instructions."""

    def __init__(self, image_root: Path, instructions: Path, data_root: Path) -> None:
        self.roots = [image_root, instructions, data_root]

    def path(self, task: CoinTask, name: str) -> Path:
        folders = [root / f for root in self.roots for f in task.folders]
        found = find_optional(folders, name)
        if found is None:
            raise UserError(f"CoIN {task.name}: ground-truth file {name} not found (looked in "
                            f"{', '.join(str(f) for f in folders)})")
        return found


def read_native(data_root: Path, image_root: Path | None = None, strict_counts: bool = True) -> NativeData:
    instructions, image_root = locate(data_root, image_root)
    images = ImageIndex(image_root, [t.folders for t in TASKS_NATIVE])
    truth = _Truth(image_root, instructions, data_root)
    records, sources, later, absent = {}, {}, {}, {}
    for task in TASKS_NATIVE:
        folder = find_dir(instructions, task.folders, f"CoIN task {task.name}")
        train_path = find_file(folder, ("train.json",), "train")
        test_path = find_file(folder, task.test_files, "test")
        train = _read_train(train_path, task, images)
        later[task.name] = later_turns(train)
        raw_test = read_json_list(test_path)
        test, used, absent[task.name] = _read_test(raw_test, test_path, task, images, truth, strict_counts)
        records[task.name] = {"train": train, "test": test}
        sources[task.name] = [train_path, test_path, *used]
    info = {"strict_counts": strict_counts, "later_turns_trained": later,
            # questions the native scorer counts that the test file lacks (summary.json repeats it)
            "absent_test_records": {t: n for t, n in absent.items() if n}}
    return NativeData(NAME, list(TASKS), records, image_root, sources, info)


def _read_train(path: Path, task: CoinTask, images: ImageIndex) -> list:
    rows = []
    for index, raw in enumerate(read_json_list(path)):
        nid = native_id(raw, ("id", "question_id"), path, index)
        exchanges = conversation_turns(raw, path, index)
        image = _image(raw, path, index, task, images)
        rows.append(conversation_record(f"{NAME}/{task.name}/train/{index}", nid, index, image, exchanges))
    return rows


def _image(raw: dict, path: Path, index: int, task: CoinTask, images: ImageIndex) -> str | None:
    if raw.get("image") is None:
        if task.name != "ScienceQA":  # only ScienceQA has text-only questions
            raise UserError(f"{path}: record {index} has no 'image'")
        return None
    return images.resolve(str(raw["image"]), path, index)


def _read_test(raw_rows: list[dict], path: Path, task: CoinTask, images: ImageIndex, truth: _Truth,
               strict: bool) -> tuple[list, list[Path], int]:
    """The test records (with ScienceQA's absent placeholders last), the ground-truth files read, and how
    many questions the native scorer counts that the test file lacks."""
    for index, raw in enumerate(raw_rows):
        require_keys(raw, ("question_id", "text"), path, index)
        if "<image>" in str(raw["text"]):
            raise UserError(f"{path}: record {index}: 'text' holds an <image> token; CoIN's pipeline adds it")
    ids = [str(r["question_id"]) for r in raw_rows]
    check_unique(ids, path, "question_id")
    targets, used = _ground_truth(raw_rows, ids, path, task, truth, strict)
    rows = []
    for index, (raw, nid) in enumerate(zip(raw_rows, ids)):
        image = _image(raw, path, index, task, images)
        rows.append(record(f"{NAME}/{task.name}/test/{nid}", nid, index, image, str(raw["text"]), **targets[index]))
    missing = targets[len(raw_rows):]
    for k, (nid, fields) in enumerate(missing):
        # never generated for; scienceqa/coin scores it as failed, scienceqa/coin_skip_absent leaves it out
        rows.append(record(f"{NAME}/{task.name}/test/{nid}", nid, len(raw_rows) + k, None, fields.pop("prompt"),
                           meta={"absent": True}, **fields))
    return rows, used, len(missing)


def _ground_truth(raw_rows: list[dict], ids: list[str], path: Path, task: CoinTask, truth: _Truth,
                  strict: bool) -> tuple[list[dict[str, Any]], list[Path]]:
    """Per test record the scorer's fields (target, references, choices, bbox, image_size).

    ScienceQA: after one entry per test record, one ``(pid, fields + prompt)`` per test problem of
    pid_splits.json that the test file lacks (CoIN's scorer counts every test problem)."""
    if task.name == "ScienceQA":
        problems_path, splits_path = truth.path(task, "problems.json"), truth.path(task, "pid_splits.json")
        problems, splits = read_json(problems_path), read_json(splits_path)
        test_pids = list(dict.fromkeys(str(p) for p in splits.get("test", []))) if isinstance(splits, dict) else []
        if strict and sorted(ids) != sorted(test_pids):
            raise UserError(f"{path}: {len(ids)} questions, but {splits_path} lists {len(test_pids)} test problems "
                            f"(CoIN scores every test problem; with --set strict_counts=false the absent ones count as "
                            f"failed, or are left out with --scorer-variant ScienceQA=coin_skip_absent)")

        def fields(pid: str, where: str) -> dict[str, Any]:
            problem = problems.get(pid) if isinstance(problems, dict) else None
            if not isinstance(problem, dict) or not isinstance(problem.get("answer"), int):
                raise UserError(f"{problems_path}: no problem {pid!r} with an integer 'answer' ({where})")
            return {"target": LETTERS[problem["answer"]], "choices": [str(c) for c in problem.get("choices", [])],
                    "prompt": str(problem.get("question", ""))}

        out: list[Any] = []
        for index, pid in enumerate(ids):
            entry = fields(pid, f"test record {index} of {path}")
            del entry["prompt"]  # the test file's own text is the prompt
            out.append(entry)
        present = set(ids)
        out += [(pid, fields(pid, f"test problem of {splits_path}, absent from {path}"))
                for pid in test_pids if pid not in present]
        return out, [problems_path, splits_path]
    if task.name == "TextVQA":
        ann_path = truth.path(task, "TextVQA_0.5.1_val.json")
        data = read_json(ann_path)
        answers = {str(a["question_id"]): a["answers"] for a in data.get("data", [])} if isinstance(data, dict) else {}
        out = []
        for index, qid in enumerate(ids):
            if qid not in answers:
                raise UserError(f"{ann_path}: no question_id {qid} (test record {index} of {path})")
            refs = [str(a) for a in answers[qid]]
            out.append({"target": str(raw_rows[index].get("answer", max(set(refs), key=refs.count))),
                        "references": refs})
        return out, [ann_path]
    if task.name == "GQA":
        q_path = truth.path(task, "testdev_balanced_questions.json")
        questions = read_json(q_path)
        out = []
        for index, qid in enumerate(ids):
            entry = questions.get(qid) if isinstance(questions, dict) else None
            if not isinstance(entry, dict) or "answer" not in entry:
                raise UserError(f"{q_path}: no question {qid!r} with an 'answer' (test record {index} of {path})")
            out.append({"target": str(entry["answer"])})
        return out, [q_path]
    if task.name == "Grounding":
        out = []
        for index, raw in enumerate(raw_rows):
            require_keys(raw, ("answer_bbox", "size"), path, index)
            out.append({"target": str(raw.get("answer", raw["answer_bbox"])), "bbox": _box(raw["answer_bbox"], path, index),
                        "image_size": [int(v) for v in raw["size"]][:2]})
        return out, []
    for index, raw in enumerate(raw_rows):
        require_keys(raw, ("answer",), path, index)
    return [{"target": str(raw["answer"])} for raw in raw_rows], []


def _box(raw: Any, path: Path, index: int) -> list[float]:
    try:
        values = [float(v) for v in (raw.replace("[", "").replace("]", "").split(",") if isinstance(raw, str) else raw)]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4:
        raise UserError(f"{path}: record {index}: 'answer_bbox' {raw!r} is not [x1, y1, x2, y2]")
    return values


def _native_data(data_root: str | Path | None, image_root: str | Path | None, strict_counts: bool) -> NativeData:
    return open_release(NAME, data_root, image_root, strict_counts, read_native)


def load_coin(data_root: str | Path | None = None, image_root: str | Path | None = None,
              train_size: int | None = None, test_size: int | None = None, strict_counts: bool = True,
              stream: str = "report", **_: Any) -> Benchmark:
    """CoIN from the native release (or a converted folder); sizes None = every record."""
    return make_benchmark(_native_data(data_root, image_root, strict_counts), train_size, test_size, TEMPLATE,
                          stream)


def convert_coin(data_root: str | Path, output: str | Path, image_root: str | Path | None = None,
                 strict_counts: bool = True) -> Path:
    """Validate the native release and write the canonical on-disk format to ``output``."""
    data = _native_data(data_root, image_root, strict_counts)
    return write_canonical(data, Path(output).expanduser(), Path(data_root).expanduser(), TEMPLATE)
