"""Small UCIT and CoIN folders in their EXACT native layouts (a handful of records per task, tiny PIL images).

UCIT layouts:
  ``release``: ``<root>/instructions/<Task>/{train*.json,test_3000.json,val_coco_type_3000.json}`` and
               ``<root>/datasets/<images>`` (the audited release);
  ``hf``:      ``<root>/<Task>/...`` as downloaded from HaiyangGuo/UCIT, images in a separate folder;
  ``mcitlib``: MCITlib's renames: folders VizWiz-caption, CLEVR-Math, Flickr30k-cap, files train.json /
               test.json, images under ``<root>`` in folders named like the renamed task folders while the
               records still say ``CLEVR/...``, ``VizWiz/...``, ``Flickr30k/...``.
CoIN layouts:
  ``checkout``:     ``<root>/playground/Instructions_Original/<Task>/`` + ``<root>/cl_dataset/`` (images and
                    the extra ground truth files);
  ``instructions``: ``<root>/Instruction_Type1/<Task>/`` with ``--image-root`` elsewhere.
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

COLOURS = ["red", "green", "blue", "yellow", "purple", "white"]


def _image(path: Path, i: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20 + i, 16), COLOURS[i % len(COLOURS)]).save(path)


def _dump(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _conv(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]


# ------------------------------------------------------------------------------------------------ UCIT
# task -> (release folder, MCITlib folder, release train file, id field, image path fn(split, i), question, answers)
UCIT = {
    "ImageNet-R": ("ImageNet-R", "ImageNet-R", "train.json", "id",
                   lambda s, i: f"ImageNet-R/{s}/n0144{i % 2}/img_{i}.jpg",
                   "What is the object in the image? Answer with a word.", ["goldfish", "toucan"]),
    "ArxivQA": ("ArxivQA", "ArxivQA", "train_4w.json", "id", lambda s, i: f"ArxivQA/images/fig_{s}_{i}.jpg",
                "Which curve is highest?\nA. a\nB. b\nAnswer with the option's letter.", ["A", "B"]),
    "VizWiz-caption": ("VizWiz", "VizWiz-caption", "train.json", "question_id",
                       lambda s, i: f"VizWiz/{'train' if s == 'train' else 'val'}/VizWiz_{'train' if s == 'train' else 'val'}_{i:08d}.jpg",
                       "Describe the image briefly.", ["a red can on a table", "a green bottle"]),
    "IconQA": ("IconQA", "IconQA", "train.json", "question_id",
               lambda s, i: f"IconQA/iconqa_data/iconqa/{s}/choose_txt/{i}/image.png",
               "How many shapes are there?", ["3", "4"]),
    "CLEVR-Math": ("CLEVR", "CLEVR-Math", "train_4w.json", "id",
                   lambda s, i: f"CLEVR/images/CLEVR_{s}_{i:06d}.png",
                   "Subtract all red cubes. How many objects are left?", ["2", "5"]),
    "Flickr30k": ("Flickr30k", "Flickr30k-cap", "train_brief_4w.json", "question_id",
                  lambda s, i: f"Flickr30k/{1000 + i + (0 if s == 'train' else 500)}.jpg",
                  "Write a brief caption.", ["two dogs run", "a man rides a bike"]),
}
CAPTION_TASKS = ("VizWiz-caption", "Flickr30k")


def make_ucit(root: Path, layout: str = "release", n_train: int = 4, n_test: int = 3,
              image_root: Path | None = None) -> tuple[Path, Path]:
    """Write a small UCIT; returns (data_root, image_root)."""
    if layout == "release":
        instructions, images = root / "instructions", root / "datasets"
    elif layout == "hf":
        instructions, images = root, image_root or root.parent / (root.name + "-images")
    elif layout == "mcitlib":
        instructions, images = root, root
    else:
        raise ValueError(layout)
    for task, (folder, mcit_folder, train_file, id_key, image_of, question, answers) in UCIT.items():
        task_dir = instructions / (mcit_folder if layout == "mcitlib" else folder)
        caption = task in CAPTION_TASKS
        train = []
        for i in range(n_train):
            # caption tasks hold one record per reference: same image, same id, another answer
            image_index = i // 2 if caption else i
            rel = image_of("train", image_index)
            record_id = f"{task[:4]}-{i // 2 if caption or task == 'CLEVR-Math' else i}"
            train.append({id_key: record_id, "image": rel, "conversations": _conv(question, answers[i % 2])})
            _image(images / _on_disk(rel, layout), i)
        test = []
        for i in range(n_test):
            rel = image_of("test", i)
            test.append({"question_id": f"{task[:4]}-q{i}", "image": rel, "text": question, "answer": answers[i % 2]})
            _image(images / _on_disk(rel, layout), 10 + i)
        names = ("train.json", "test.json") if layout == "mcitlib" else (train_file, "test_3000.json")
        _dump(task_dir / names[0], train)
        _dump(task_dir / names[1], test)
        if caption:
            _dump(task_dir / "val_coco_type_3000.json", coco_refs(test))
    return root, images


def _on_disk(rel: str, layout: str) -> str:
    """Where an image lies: MCITlib's folders carry the renamed task names."""
    if layout != "mcitlib":
        return rel
    head, _, rest = rel.partition("/")
    return "/".join([{"CLEVR": "CLEVR-Math", "VizWiz": "VizWiz-caption", "Flickr30k": "Flickr30k-cap"}.get(head, head), rest])


def coco_refs(test: list[dict]) -> dict:
    images = [{"id": i + 1, "file_name": Path(r["image"]).name} for i, r in enumerate(test)]
    annotations = [{"image_id": i + 1, "id": 5 * i + k, "caption": f"{r['answer']} {k}"}
                   for i, r in enumerate(test) for k in range(5)]
    return {"images": images, "annotations": annotations}


def ucit_task_dir(root: Path, task: str) -> Path:
    return root / "instructions" / UCIT[task][0]


# ------------------------------------------------------------------------------------------------ CoIN
COIN_TEST_FILE = {"TextVQA": "val.json", "VizWiz": "val.json", "VQAv2": "val.json"}
COIN_FOLDER = {"OCR-VQA": "OCRVQA"}
COIN_TASKS = ("ScienceQA", "TextVQA", "ImageNet", "GQA", "VizWiz", "Grounding", "VQAv2", "OCR-VQA")


def make_coin(root: Path, layout: str = "checkout", n_train: int = 3, n_test: int = 3,
              image_root: Path | None = None) -> tuple[Path, Path]:
    """Write a small CoIN; returns (data_root, image_root). ScienceQA's second test question is text-only."""
    if layout == "checkout":
        instructions, images = root / "playground" / "Instructions_Original", root / "cl_dataset"
    elif layout == "instructions":
        instructions, images = root / "Instruction_Type1", image_root or root.parent / (root.name + "-images")
    else:
        raise ValueError(layout)
    for t, task in enumerate(COIN_TASKS):
        folder = instructions / COIN_FOLDER.get(task, task)
        train, test = [], []
        for i in range(n_train):
            rel = f"{task}/train/{i}.jpg"
            row = {"id": f"{task}-t{i}", "image": rel, "conversations": _conv(f"{task} question {i}?", f"answer {i}")}
            if task == "ScienceQA" and i == 1:
                del row["image"]
                row["conversations"][0]["value"] = "Which is a mammal?\nA. cat\nB. trout"
            else:
                _image(images / rel, t + i)
            train.append(row)
        for i in range(n_test):
            qid = i + 100 * (t + 1) if task != "ScienceQA" else str(10 + i)
            rel = f"{task}/test/{i}.jpg"
            row = {"question_id": qid, "image": rel, "text": f"{task} question {i}?"}
            if task == "ScienceQA" and i == 1:
                del row["image"]
            else:
                _image(images / rel, t + i + 3)
            if task in ("ImageNet", "VizWiz", "VQAv2", "OCR-VQA", "TextVQA"):
                row["answer"] = f"answer {i}"
            if task == "Grounding":
                row["answer_bbox"] = f"[0.1{i}, 0.2, 0.5, 0.6{i}]"
                row["size"] = [20 + i, 16]
            test.append(row)
        _dump(folder / "train.json", train)
        _dump(folder / COIN_TEST_FILE.get(task, "test.json"), test)
    _coin_truth(images, n_test)
    return root, images


def _coin_truth(images: Path, n_test: int) -> None:
    pids = [str(10 + i) for i in range(n_test)]
    problems = {pid: {"answer": i % 2, "choices": ["cat", "trout"] if i % 2 == 0 else ["red", "blue", "green"]}
                for i, pid in enumerate(pids)}
    _dump(images / "ScienceQA" / "problems.json", problems)
    _dump(images / "ScienceQA" / "pid_splits.json", {"train": [], "val": [], "test": pids})
    t = COIN_TASKS.index("TextVQA") + 1
    _dump(images / "TextVQA" / "TextVQA_0.5.1_val.json",
          {"data": [{"question_id": i + 100 * t, "answers": [f"answer {i}"] * 7 + ["other"] * 3} for i in range(n_test)]})
    g = COIN_TASKS.index("GQA") + 1
    _dump(images / "GQA" / "testdev_balanced_questions.json",
          {str(i + 100 * g): {"answer": f"gqa answer {i}", "isBalanced": True} for i in range(n_test)})


def coin_task_dir(root: Path, task: str) -> Path:
    return root / "playground" / "Instructions_Original" / COIN_FOLDER.get(task, task)
