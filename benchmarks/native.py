"""Shared machinery for real benchmarks read from their native release files (UCIT, CoIN).

A loader turns the native files into CANONICAL records (docs/real-data.md, "Optional: convert once"; the record fields: mcit_bench/benchmark.py):
``{"uid", "native_id", "order", "image", "prompt", "target", "turns", "references", "choices", "bbox",
"image_size", "meta"}`` with ``image`` relative to the image root (None for a text-only record).
Everything is validated while reading, before any model is loaded; every failure is a one-line
UserError naming the file (and the record). Every image is opened here (its header read and checked by
PIL, not its pixels), so an empty or corrupt file fails validation rather than a run; pixels are decoded
lazily later (``datasets.Image`` on paths), never all held in memory.

A training record may hold a multi-turn conversation: ``prompt``/``target`` are its first exchange and
``turns`` the later ones (``[{"prompt", "target"}, ...]``; empty for a single exchange). The collator
trains every answer, the earlier exchanges as context. A test record with ``meta.absent`` stands for a
question the native scorer counts but the release's test file lacks (CoIN's ScienceQA): it is never
generated for, and its scorer variant decides whether it counts as failed (see ``absent`` below).

The same records can be written to, and read back from, the canonical on-disk format:
``<out>/benchmark.json`` and ``<out>/tasks/<task>/{task.json, train.jsonl, test.jsonl}``.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from mcit_bench.benchmark import Benchmark, TaskSpec
from mcit_bench.errors import UserError
from mcit_bench.rundir.integrity import sha256_file

Record = dict[str, Any]
CANONICAL_VERSION = 1
BENCHMARK_FILE = "benchmark.json"
IMAGE_TOKEN = "<image>"


@dataclass
class NativeData:
    """What a native reader produces: canonical records per task and split, plus provenance."""

    name: str
    tasks: list[TaskSpec]
    records: dict[str, dict[str, list[Record]]]  # task -> {"train": [...], "test": [...]}
    image_root: Path
    sources: dict[str, list[Path]] = field(default_factory=dict)  # task -> native files read
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- files
def read_json(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from exc


def read_json_list(path: Path) -> list[dict[str, Any]]:
    data = read_json(path)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UserError(f"{path}: expected a JSON list of records (objects)")
    return data


def find_dir(parent: Path, aliases: Sequence[str], what: str) -> Path:
    """The first of ``parent/<alias>`` that is a folder (release names vary)."""
    for name in aliases:
        if (parent / name).is_dir():
            return parent / name
    raise UserError(f"{parent}: no folder for {what} (looked for {', '.join(aliases)})")


def find_file(folder: Path, candidates: Sequence[str], what: str) -> Path:
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"{folder}: no {what} file (looked for {', '.join(candidates)})")


def find_optional(folders: Iterable[Path], name: str) -> Path | None:
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    return None


# --------------------------------------------------------------------------------------- checks
def check_count(n: int, expected: int | None, path: Path, strict: bool, what: str = "records") -> None:
    """A count differing from the release's is an error unless counts are relaxed (subsets, fixtures)."""
    if strict and expected is not None and n != expected:
        raise UserError(f"{path}: {n} {what}, the release has {expected} (a partial download? pass "
                        f"--set strict_counts=false to run on a subset)")


def check_unique(values: Sequence[Any], path: Path, what: str) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise UserError(f"{path}: duplicate {what} {value!r}")
        seen.add(value)


def native_id(record: dict[str, Any], keys: Sequence[str], path: Path, index: int) -> str:
    for key in keys:
        if key in record and record[key] is not None:
            return str(record[key])
    raise UserError(f"{path}: record {index} has no {' or '.join(repr(k) for k in keys)} field")


def conversation_turns(record: dict[str, Any], path: Path, index: int) -> list[tuple[str, str]]:
    """Every (instruction, answer) exchange of a LLaVA conversation record, in order.

    LLaVA and CoIN train on every answer of a conversation (one image, several question-answer pairs in
    LLaVA's instruction mixture). The image token is removed and each instruction stripped, as LLaVA's
    preprocessing does before it puts ``<image>\\n`` in front of the first one (the template places it).
    """
    turns = record.get("conversations")
    if not isinstance(turns, list) or len(turns) < 2:
        raise UserError(f"{path}: record {index} needs 'conversations' with a human and a gpt turn")
    if len(turns) % 2 or not all(
            isinstance(turn, dict) and turn.get("from") == role and isinstance(turn.get("value"), str)
            for turn, role in zip(turns, ("human", "gpt") * (len(turns) // 2))):
        raise UserError(f"{path}: record {index} 'conversations' must alternate human and gpt turns (strings), "
                        f"starting with human")
    return [(turns[i]["value"].replace(IMAGE_TOKEN, "").strip(), turns[i + 1]["value"])
            for i in range(0, len(turns), 2)]


def require_keys(record: dict[str, Any], keys: Sequence[str], path: Path, index: int) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise UserError(f"{path}: record {index} lacks field(s) {', '.join(missing)} (has {', '.join(sorted(record))})")


class ImageIndex:
    """Resolves record image paths under the image root, accepting folder-name aliases for the first path
    component (CLEVR vs CLEVR-Math, ...), and fails on a missing or unreadable image (each distinct file is
    opened once: PIL reads and checks its header, the pixels are not decoded)."""

    def __init__(self, root: Path, alias_groups: Sequence[Sequence[str]] = ()) -> None:
        self.root = root
        self.alias = {name: [a for a in group if a != name] for group in alias_groups for name in group}
        self._seen: dict[str, str | None] = {}
        self._checked: set[str] = set()

    def resolve(self, relative: str, path: Path, index: int) -> str:
        """The path relative to the root where the image exists (possibly with an aliased first folder)."""
        self._inside(relative, relative, path, index)
        if relative in self._seen:
            found = self._seen[relative]
        else:
            found = self._find(relative)
            self._seen[relative] = found
        if found is None:
            raise UserError(f"{path}: record {index}: image {relative!r} not found under {self.root}")
        if found not in self._checked:
            self._inside(found, relative, path, index)  # after symlinks too
            problem = unreadable_image(self.root / found)
            if problem:
                raise UserError(f"{self.root / found}: not a readable image ({problem}; record {index} of {path})")
            self._checked.add(found)
        return found

    def _inside(self, candidate: str, relative: str, path: Path, index: int) -> None:
        """An annotation's image path stays inside the image root (no absolute path, no ``..`` or symlink out)."""
        root = os.path.realpath(self.root)
        if os.path.isabs(relative) or os.path.commonpath([root, os.path.realpath(self.root / candidate)]) != root:
            raise UserError(f"{path}: record {index}: image {relative!r} is outside the image root {self.root} "
                            f"(expected a path relative to it)")

    def _find(self, relative: str) -> str | None:
        if os.path.isfile(self.root / relative):
            return relative
        head, _, rest = relative.replace("\\", "/").partition("/")
        for other in self.alias.get(head, []):
            if rest and os.path.isfile(self.root / other / rest):
                return f"{other}/{rest}"
        return None


def unreadable_image(path: Path) -> str | None:
    """Why PIL cannot read ``path`` as an image (empty, truncated header, not an image), or None.

    ``Image.open`` parses the header; ``verify`` checks what the format allows without decoding pixels
    (PNG: the chunk checksums; JPEG: the markers read so far). Cheap next to a training step.
    """
    from PIL import Image

    if os.path.getsize(path) == 0:
        return "empty file"
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, SyntaxError, OSError, ...)
        return " ".join(f"{type(exc).__name__}: {exc}".split())
    return None


def record(uid: str, native: str, order: int, image: str | None, prompt: str, target: str,
           references: list[str] | None = None, choices: list[str] | None = None, bbox: list[float] | None = None,
           image_size: list[int] | None = None, meta: dict[str, Any] | None = None,
           turns: list[dict[str, str]] | None = None) -> Record:
    return {"uid": uid, "native_id": native, "order": order, "image": image, "prompt": prompt, "target": target,
            "turns": turns or [], "references": references or [], "choices": choices or [], "bbox": bbox or [],
            "image_size": image_size or [], "meta": meta or {}}


def conversation_record(uid: str, native: str, order: int, image: str | None,
                        exchanges: list[tuple[str, str]]) -> Record:
    """A training record from every exchange of a conversation (``conversation_turns``)."""
    (prompt, target), later = exchanges[0], exchanges[1:]
    return record(uid, native, order, image, prompt, target,
                  turns=[{"prompt": p, "target": t} for p, t in later])


def later_turns(rows: list[Record]) -> int:
    """How many answers beyond each conversation's first the records hold (all trained)."""
    return sum(len(r["turns"]) for r in rows)


def absent(record: Record) -> bool:
    """A placeholder for a test question the native scorer counts but the test file lacks."""
    return bool((record.get("meta") or {}).get("absent"))


# --------------------------------------------------------------------------------------- serving
def subsample(records: list[Record], n: int | None, key: str) -> list[Record]:
    """All records (``n`` None), or ``n`` of them chosen deterministically by ``key``, in native order."""
    if n is None or n >= len(records):
        return records
    if not isinstance(n, int) or n <= 0:
        raise UserError(f"train_size/test_size must be a positive integer or null (all), got {n!r}")
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    keep = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in keep]


COLUMNS = ("uid", "native_id", "image", "prompt", "target", "turns", "references", "choices", "bbox", "image_size",
           "absent")


def to_dataset(records: list[Record], image_root: Path):
    """A ``datasets.Dataset`` whose ``image`` column holds file paths, decoded only when a row is read."""
    import datasets

    columns: dict[str, list[Any]] = {key: [] for key in COLUMNS}
    for r in records:
        for key in COLUMNS:
            value = absent(r) if key == "absent" else r.get(key, [] if key == "turns" else None)
            if key == "image" and value is not None:
                value = str(image_root / value)
            columns[key].append(value)
    features = datasets.Features({
        "uid": datasets.Value("string"), "native_id": datasets.Value("string"), "image": datasets.Image(),
        "prompt": datasets.Value("string"), "target": datasets.Value("string"),
        "turns": datasets.List({"prompt": datasets.Value("string"), "target": datasets.Value("string")}),
        "absent": datasets.Value("bool"),
        "references": datasets.List(datasets.Value("string")), "choices": datasets.List(datasets.Value("string")),
        "bbox": datasets.List(datasets.Value("float64")), "image_size": datasets.List(datasets.Value("int64")),
    })
    return datasets.Dataset.from_dict(columns, features=features)


# The tuning stream (``mcit-bench tune``): this share of each task's training records (at least one, at most
# VALIDATION_MAX) becomes its validation split; the trial trains on the rest and is scored on those records,
# never on the test split a leaderboard reports.
VALIDATION_FRACTION = 0.05
VALIDATION_MAX = 1000


def carve_validation(records: list[Record], key: str, needs_box: bool = False) -> tuple[list[Record], list[Record]]:
    """(training records, validation records): a deterministic share of ``records`` chosen by ``key``.

    ``needs_box`` (grounding): only records whose answer is a box can be scored, so only those are held out.
    """
    if len(records) < 2:
        raise UserError(f"{key}: {len(records)} training record(s); the tuning stream needs at least 2 to carve "
                        f"a validation split")
    candidates = [i for i, r in enumerate(records) if not needs_box or len(_NUMBER.findall(str(r["target"]))) == 4]
    if not candidates:
        raise UserError(f"{key}: no training answer is a box [x1, y1, x2, y2]; the tuning stream cannot score "
                        f"this grounding task")
    n = min(VALIDATION_MAX, len(candidates) - (len(candidates) == len(records)),
            max(1, round(VALIDATION_FRACTION * len(records))))
    seed = int.from_bytes(hashlib.sha256(f"{key}/validation".encode()).digest()[:8], "big")
    held = set(random.Random(seed).sample(candidates, n))
    train = [r for i, r in enumerate(records) if i not in held]
    return train, [as_validation(r) for i, r in enumerate(records) if i in held]


def as_validation(row: Record) -> Record:
    """A training record scored like a test record: its answer is the reference (and the box, if any)."""
    out = dict(row)
    out["uid"] = str(row["uid"]).replace("/train/", "/validation/")
    out["references"] = list(row.get("references") or []) or [row["target"]]
    if not row.get("bbox"):  # a grounding answer is the box itself, "[x1, y1, x2, y2]"
        numbers = _NUMBER.findall(str(row["target"]))
        out["bbox"] = [float(v) for v in numbers] if len(numbers) == 4 else []
    return out


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def make_benchmark(data: NativeData, train_size: int | None, test_size: int | None, template: str,
                   stream: str = "report") -> Benchmark:
    """Serve validated records as a Benchmark; splits are subsampled and turned into datasets on first use.

    ``stream="tuning"``: ``test_split`` serves the validation records carved from each task's training data
    (``carve_validation``) and ``train_split`` the remaining training records; no test record is served.
    """
    cache: dict[tuple[str, str], Any] = {}
    carved: dict[str, tuple[list[Record], list[Record]]] = {}

    def records_of(task: str, name: str) -> list[Record]:
        if task not in data.records:
            raise UserError(f"benchmark {data.name!r} has no task {task!r}")
        if stream != "tuning":
            return data.records[task][name]
        if task not in carved:
            spec = next(t for t in data.tasks if t.name == task)
            carved[task] = carve_validation(data.records[task]["train"], f"{data.name}/{task}",
                                            needs_box=spec.scorer == "grounding_iou")
        return carved[task][0 if name == "train" else 1]

    def split(name: str) -> Callable[[str], Any]:
        size = train_size if name == "train" else test_size
        tag = name if stream != "tuning" or name == "train" else "validation"

        def get(task: str) -> Any:
            if (task, name) not in cache:
                chosen = subsample(records_of(task, name), size, f"{data.name}/{task}/{tag}")
                cache[(task, name)] = to_dataset(chosen, data.image_root)
            return cache[(task, name)]
        return get

    counts = {t: {s: len(v) for s, v in splits.items()} for t, splits in data.records.items()}
    info = {"train_size": train_size, "test_size": test_size, "image_root": str(data.image_root),
            "native_counts": counts, "stream": stream, **data.info}
    if stream == "tuning":
        info["validation"] = {"fraction": VALIDATION_FRACTION, "max": VALIDATION_MAX,
                              "from": "each task's training records"}
    return Benchmark(name=data.name, tasks=list(data.tasks), train_split=split("train"), test_split=split("test"),
                     info=info, template=template)


# --------------------------------------------------------------------------------------- canonical format
def write_canonical(data: NativeData, out: Path, data_root: Path, template: str) -> Path:
    """Write ``benchmark.json`` and ``tasks/<task>/{task.json,train.jsonl,test.jsonl}`` (atomically per file)."""
    from mcit_bench.rundir.atomic import atomic_write_bytes, atomic_write_json

    sources = []
    for task, paths in data.sources.items():
        for p in paths:
            try:
                shown = str(p.relative_to(data_root))
            except ValueError:
                shown = str(p)
            sources.append({"task": task, "path": shown, "sha256": sha256_file(p)})
    for spec in data.tasks:
        folder = out / "tasks" / spec.name
        counts = {}
        for split_name in ("train", "test"):
            rows = data.records[spec.name][split_name]
            counts[split_name] = len(rows)
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            atomic_write_bytes(folder / f"{split_name}.jsonl", lines.encode("utf-8"))
        atomic_write_json(folder / "task.json", {**spec.to_dict(), "counts": counts,
                                                 "sources": [s for s in sources if s["task"] == spec.name]})
    atomic_write_json(out / BENCHMARK_FILE, {
        "name": data.name, "version": CANONICAL_VERSION, "image_root": str(data.image_root.resolve()),
        "template": template, "tasks": [t.name for t in data.tasks], "sources": sources, "info": data.info,
    })
    return out


def is_canonical(root: Path) -> bool:
    return (root / BENCHMARK_FILE).is_file()


def read_canonical(root: Path, name: str, image_root: Path | None) -> NativeData:
    """Records written by ``write_canonical``, re-validated (uids unique, counts, images present)."""
    meta = read_json(root / BENCHMARK_FILE)
    if not isinstance(meta, dict) or meta.get("name") != name:
        raise UserError(f"{root / BENCHMARK_FILE}: field 'name' is {meta.get('name') if isinstance(meta, dict) else None!r}, "
                        f"expected {name!r}")
    if meta.get("version") != CANONICAL_VERSION:
        raise UserError(f"{root / BENCHMARK_FILE}: field 'version' is {meta.get('version')!r}, expected {CANONICAL_VERSION}")
    images = ImageIndex(image_root or Path(meta["image_root"]))
    tasks, records = [], {}
    for task_name in meta["tasks"]:
        folder = root / "tasks" / task_name
        spec_data = read_json(folder / "task.json")
        counts = spec_data.pop("counts", {})
        spec_data.pop("sources", None)
        tasks.append(TaskSpec(**spec_data))
        records[task_name] = {}
        uids: list[str] = []
        for split_name in ("train", "test"):
            path = folder / f"{split_name}.jsonl"
            if not path.is_file():
                raise UserError(f"{path}: file not found")
            rows = []
            with open(path, encoding="utf-8") as handle:
                for index, line in enumerate(handle):
                    try:
                        row = json.loads(line)
                    except ValueError as exc:
                        raise UserError(f"{path}: line {index + 1} is not valid JSON") from exc
                    require_keys(row, ("uid", "image", "prompt", "target"), path, index)
                    if row["image"] is not None:
                        row["image"] = images.resolve(row["image"], path, index)
                    rows.append(record(str(row["uid"]), str(row.get("native_id", "")), row.get("order", index),
                                       row["image"], row["prompt"], row["target"], row.get("references"),
                                       row.get("choices"), row.get("bbox"), row.get("image_size"), row.get("meta"),
                                       row.get("turns")))
            if split_name in counts and len(rows) != counts[split_name]:
                raise UserError(f"{path}: {len(rows)} records, task.json says {counts[split_name]}")
            uids += [r["uid"] for r in rows]
            records[task_name][split_name] = rows
        check_unique(uids, folder, "uid")
    return NativeData(name, tasks, records, images.root, info=dict(meta.get("info", {})))


def open_release(name: str, data_root: str | Path | None, image_root: str | Path | None, strict_counts: bool,
                 read_native: Callable[[Path, Path | None, bool], NativeData]) -> NativeData:
    """A real benchmark's records from ``--data-root``: a converted (canonical) folder, else the native
    release read by the benchmark's own ``read_native``."""
    if data_root is None:
        raise UserError(f"benchmark {name} reads the downloaded release: pass --data-root (see README, "
                        f"'Running on real data')")
    root = Path(data_root).expanduser()
    images = Path(image_root).expanduser() if image_root else None
    if is_canonical(root):
        return read_canonical(root, name, images)
    return read_native(root, images, strict_counts)
