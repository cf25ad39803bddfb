"""UCIT from its native release layouts: loading, aliases, validation failures (each a one-line UserError
naming the file), conversion to the canonical format and back, task orders, scoring wiring, and a quick
continual run with the tiny backbone (counts relaxed through ``--set strict_counts=false``)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcit_bench.benchmark import load_benchmark
from mcit_bench.cli import main
from mcit_bench.config import load_order
from mcit_bench.errors import UserError

from conftest import BACKBONE
from native_fixtures import UCIT, make_ucit, ucit_task_dir

CANONICAL = ["ImageNet-R", "ArxivQA", "VizWiz-caption", "IconQA", "CLEVR-Math", "Flickr30k"]


@pytest.fixture()
def ucit(tmp_path: Path) -> Path:
    root, _ = make_ucit(tmp_path / "UCIT", "release")
    return root


def _load(root: Path, **options):
    return load_benchmark("ucit", data_root=str(root), strict_counts=options.pop("strict_counts", False), **options)


@pytest.mark.parametrize("layout", ["release", "hf", "mcitlib"])
def test_native_layouts_load_the_same_records(tmp_path: Path, layout: str) -> None:
    root, images = make_ucit(tmp_path / "UCIT", layout)
    bench = _load(root, image_root=str(images) if layout == "hf" else None)
    assert bench.name == "ucit" and bench.task_names == CANONICAL and bench.template == "vicuna_v1"
    assert all(t.max_new_tokens == 128 for t in bench.tasks)
    assert [t.scorer for t in bench.tasks] == ["exact_match", "exact_match", "caption", "exact_match", "exact_match",
                                               "caption"]
    for task in CANONICAL:
        train, test = bench.train_split(task), bench.test_split(task)
        assert (len(train), len(test)) == (4, 3)
        uids = list(train["uid"]) + list(test["uid"])
        assert len(set(uids)) == len(uids)  # own uids although native train ids repeat
        assert all("<image>" not in p for p in list(train["prompt"]))
    clevr = bench.train_split("CLEVR-Math")
    assert clevr[0]["prompt"] == UCIT["CLEVR-Math"][5] and clevr[0]["target"] == "2"
    assert len(set(list(clevr["native_id"]))) < len(clevr)  # CLEVR's train ids are not unique
    viz = bench.test_split("VizWiz-caption")
    assert viz[1]["references"] == [f"a green bottle {k}" for k in range(5)] and viz[1]["target"] == "a green bottle"
    assert viz[0]["uid"] == "ucit/VizWiz-caption/test/VizW-q0"
    # the image column holds paths, decoded only when a row is read
    stored = viz.data.column("image")[0].as_py()
    assert stored["bytes"] is None and stored["path"].endswith("VizWiz_val_00000000.jpg")
    assert viz[0]["image"].size == (30, 16)


def test_mcitlib_images_resolve_through_folder_aliases(tmp_path: Path) -> None:
    root, _ = make_ucit(tmp_path / "UCIT", "mcitlib")
    bench = _load(root)
    path = bench.train_split("CLEVR-Math").data.column("image")[0].as_py()["path"]
    assert "/CLEVR-Math/images/" in path  # the record says CLEVR/images/...


def test_counts_are_checked_against_the_release_by_default(ucit: Path) -> None:
    with pytest.raises(UserError, match=r"ImageNet-R/train\.json: 4 records, the release has 23998.*strict_counts=false"):
        _load(ucit, strict_counts=True)


def _set_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("breakage,message", [
    (lambda r: (ucit_task_dir(r, "IconQA") / "test_3000.json").unlink(),
     r"IconQA: no test file \(looked for test_3000\.json, test\.json\)"),
    (lambda r: (r / "datasets" / "ArxivQA" / "images" / "fig_test_2.jpg").unlink(),
     r"ArxivQA/test_3000\.json: record 2: image 'ArxivQA/images/fig_test_2\.jpg' not found"),
    (lambda r: _set_json(ucit_task_dir(r, "ArxivQA") / "test_3000.json", lambda d: d[2].update(question_id="Arxi-q0")),
     r"ArxivQA/test_3000\.json: duplicate question_id 'Arxi-q0'"),
    (lambda r: _set_json(ucit_task_dir(r, "Flickr30k") / "val_coco_type_3000.json",
                         lambda d: d["images"][1].update(file_name="999.jpg")),
     r"Flickr30k/val_coco_type_3000\.json: images\[1\]\.file_name is '999\.jpg' but test record 1"),
    (lambda r: _set_json(ucit_task_dir(r, "VizWiz-caption") / "val_coco_type_3000.json",
                         lambda d: d["images"].reverse()),
     r"VizWiz/val_coco_type_3000\.json: images\[0\]\.id is 3, expected 1"),
    (lambda r: (ucit_task_dir(r, "VizWiz-caption") / "val_coco_type_3000.json").unlink(),
     r"VizWiz: no caption reference file \(looked for val_coco_type_3000\.json\)"),
    (lambda r: _set_json(ucit_task_dir(r, "IconQA") / "test_3000.json", lambda d: d[0].pop("answer")),
     r"IconQA/test_3000\.json: record 0 lacks field\(s\) answer"),
    (lambda r: _set_json(ucit_task_dir(r, "IconQA") / "test_3000.json", lambda d: d[0].update(text="<image>\nHow many?")),
     r"IconQA/test_3000\.json: record 0 .*'text' holds an <image> token"),
    (lambda r: (ucit_task_dir(r, "ImageNet-R") / "train.json").write_text("[{oops"),
     r"ImageNet-R/train\.json: not valid JSON"),
    (lambda r: _set_json(ucit_task_dir(r, "ImageNet-R") / "train.json", lambda d: d[1].pop("conversations")),
     r"ImageNet-R/train\.json: record 1 needs 'conversations'"),
    (lambda r: (r / "datasets" / "Flickr30k" / "1001.jpg").write_bytes(b""),
     r"datasets/Flickr30k/1001\.jpg: not a readable image \(empty file; record 2 of .*Flickr30k/train_brief_4w\.json\)"),
    (lambda r: (r / "datasets" / "IconQA" / "iconqa_data" / "iconqa" / "test" / "choose_txt" / "1" / "image.png")
     .write_bytes(b"\x89PNG\r\n\x1a\n truncated"),
     r"iconqa/test/choose_txt/1/image\.png: not a readable image \(.*record 1 of .*IconQA/test_3000\.json\)"),
    (lambda r: (ucit_task_dir(r, "CLEVR-Math")).rename(r / "instructions" / "CLEVR-Mathematics"),
     r"no folder for UCIT task CLEVR-Math \(looked for CLEVR, CLEVR-Math"),
])
def test_validation_failures_name_the_file(ucit: Path, breakage, message: str) -> None:
    breakage(ucit)
    with pytest.raises(UserError, match=message) as info:
        _load(ucit)
    assert "\n" not in str(info.value)


def test_caption_reference_count_is_strict_unless_relaxed(tmp_path: Path) -> None:
    root, _ = make_ucit(tmp_path / "UCIT", "release")
    refs = ucit_task_dir(root, "Flickr30k") / "val_coco_type_3000.json"
    _set_json(refs, lambda d: d.update(annotations=[a for a in d["annotations"] if a["id"] != 0]))
    assert len(_load(root).test_split("Flickr30k")[0]["references"]) == 4  # relaxed: 4 references are kept
    with pytest.raises(UserError, match=r"Flickr30k/val_coco_type_3000\.json: image id 1 has 4 reference captions"):
        _strict_refs_only(root)


def _strict_refs_only(root: Path) -> None:
    """Strict reference counting on data whose record counts are those of a fixture: check the refs alone."""
    from mcit_bench.benchmarks import ucit

    test = ucit._read_test(ucit_task_dir(root, "Flickr30k") / "test_3000.json", ucit.TASKS_NATIVE[5],
                           ucit.ImageIndex(root / "datasets"))
    ucit._attach_references(test, ucit_task_dir(root, "Flickr30k") / "val_coco_type_3000.json", strict=True)


def test_missing_data_root_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="pass --data-root"):
        load_benchmark("ucit")
    with pytest.raises(UserError, match="not a folder"):
        load_benchmark("ucit", data_root=str(tmp_path / "nowhere"))


def test_subsets_are_deterministic_and_keep_native_order(ucit: Path) -> None:
    a = _load(ucit, train_size=2, test_size=2)
    b = _load(ucit, train_size=2, test_size=2)
    for task in CANONICAL:
        assert list(a.train_split(task)["uid"]) == list(b.train_split(task)["uid"])
        orders = [int(u.rsplit("/", 1)[1]) for u in list(a.train_split(task)["uid"])]
        assert len(orders) == 2 and orders == sorted(orders)
    assert len(_load(ucit).train_split("ArxivQA")) == 4  # None = all records


def test_convert_writes_canonical_format_and_reads_back_identically(ucit: Path, tmp_path: Path) -> None:
    out = tmp_path / "canonical"
    assert main(["convert", "ucit", "--data-root", str(ucit), "--output", str(out), "--no-strict-counts"]) == 0
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["name"] == "ucit" and meta["tasks"] == CANONICAL and meta["template"] == "vicuna_v1"
    assert Path(meta["image_root"]) == (ucit / "datasets").resolve()
    assert {s["path"] for s in meta["sources"]} >= {"instructions/VizWiz/val_coco_type_3000.json"}
    assert all(len(s["sha256"]) == 64 for s in meta["sources"])
    task = json.loads((out / "tasks" / "Flickr30k" / "task.json").read_text())
    assert task["scorer"] == "caption" and task["counts"] == {"train": 4, "test": 3}
    line = json.loads((out / "tasks" / "Flickr30k" / "test.jsonl").read_text().splitlines()[0])
    assert set(line) == {"uid", "native_id", "order", "image", "prompt", "target", "turns", "references", "choices",
                         "bbox", "image_size", "meta"}
    assert line["image"] == "Flickr30k/1500.jpg" and len(line["references"]) == 5
    native, canonical = _load(ucit), _load(out)
    for task_name in CANONICAL:
        for split in ("train_split", "test_split"):
            x = getattr(native, split)(task_name).remove_columns("image").to_list()
            y = getattr(canonical, split)(task_name).remove_columns("image").to_list()
            assert x == y
    # the canonical folder is validated when read too
    (ucit / "datasets" / "IconQA" / "iconqa_data" / "iconqa" / "test" / "choose_txt" / "0" / "image.png").unlink()
    with pytest.raises(UserError, match=r"IconQA/test\.jsonl: record 0: image .* not found"):
        _load(out)


def test_convert_refuses_bad_native_data_before_writing(ucit: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "canonical"
    assert main(["convert", "ucit", "--data-root", str(ucit), "--output", str(out)]) == 2  # strict counts
    assert "the release has 23998" in capsys.readouterr().err and not out.exists()


def test_task_orders_index_the_canonical_ucit_order(ucit: Path) -> None:
    names = _load(ucit).task_names
    assert load_order("1", names, "ucit") == CANONICAL
    assert load_order("3", names, "ucit") == ["IconQA", "Flickr30k", "ArxivQA", "CLEVR-Math", "ImageNet-R",
                                             "VizWiz-caption"]
    for k in range(1, 7):
        assert sorted(load_order(str(k), names, "ucit")) == sorted(CANONICAL)


def test_scoring_wiring_exact_match_and_caption_references(ucit: Path) -> None:
    from mcit_bench.scorers import get_scorer

    bench = _load(ucit)
    records = bench.test_split("ImageNet-R").remove_columns("image").to_list()
    spec = bench.task("ImageNet-R")
    preds = [r["target"].upper() for r in records]  # case-insensitive exact match
    assert get_scorer(spec.scorer, spec.scorer_variant).score(preds, records).score == 100.0
    preds[0] += "."  # no punctuation stripping
    assert get_scorer(spec.scorer, spec.scorer_variant).score(preds, records).score == pytest.approx(200 / 3)
    captions = bench.test_split("Flickr30k").remove_columns("image").to_list()
    result = get_scorer("caption", "python").score([r["references"][0] for r in captions], captions)
    assert result.details["bleu_1"] == pytest.approx(100.0)


def test_caption_task_uses_the_seven_metric_coco_score_when_available(ucit: Path) -> None:
    """The UCIT caption TaskSpec (caption/auto) goes through pycocoevalcap + Java when present: 7 metrics."""
    from mcit_bench.scorers import get_scorer
    from mcit_bench.scorers.caption_coco import coco_available

    if not coco_available():
        pytest.skip("pycocoevalcap or java missing")
    bench = _load(ucit)
    spec = bench.task("VizWiz-caption")
    records = bench.test_split("VizWiz-caption").remove_columns("image").to_list()
    result = get_scorer(spec.scorer, spec.scorer_variant).score(["a red can", "a bottle", "a red can"], records)
    assert result.details["n_metrics"] == 7 and result.details["meteor"] is not None


def test_quick_run_through_the_native_files(ucit: Path, tmp_path: Path, tiny_backbone: Path, monkeypatch) -> None:
    # caption/auto would start Java for each of the 14 caption cells: the pure-Python backend keeps this fast
    # (the coco backend is covered above and in test_caption_metrics.py)
    monkeypatch.setattr("mcit_bench.scorers.caption_coco.coco_available", lambda: False)
    out = tmp_path / "run"
    assert main(["run", "--method", "lora-ft", "--order", "1", "--benchmark", "ucit", "--data-root", str(ucit),
                 "--backbone", BACKBONE, "--preset", "quick", "--output", str(out), "--quiet", "--logger", "none",
                 "--set", "strict_counts=false", "--set", "eval_max_new_tokens=3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["benchmark"] == "ucit" and summary["tasks"] == CANONICAL
    assert summary["scorers"]["Flickr30k"] == {"scorer": "caption", "variant": "auto", "chance": None}
    preds = [json.loads(x) for x in (out / "predictions" / "stage6" / "VizWiz-caption.jsonl").read_text().splitlines()]
    assert [p["uid"] for p in preds] == [f"ucit/VizWiz-caption/test/VizW-q{i}" for i in range(3)]
    config = (out / "config.yaml").read_text()
    assert "strict_counts: false" in config and "data_root: " + str(ucit) in config


def test_quick_run_refuses_partial_data_before_any_work(ucit: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["run", "--method", "lora-ft", "--benchmark", "ucit", "--data-root", str(ucit), "--backbone", BACKBONE,
                 "--preset", "quick", "--output", str(out), "--quiet"]) == 2
    assert "23998" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("image", ["../../../x.png", "/etc/hostname"])
def test_image_paths_outside_the_data_root_are_refused(ucit: Path, tmp_path: Path, image: str, capsys) -> None:
    path = ucit_task_dir(ucit, "ImageNet-R") / "train.json"
    records = json.loads(path.read_text())
    records[1]["image"] = image
    path.write_text(json.dumps(records))
    out = tmp_path / "canonical"
    assert main(["convert", "ucit", "--data-root", str(ucit), "--output", str(out), "--no-strict-counts"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"train.json: record 1: image {image!r} is outside the image root" in err
    assert not out.exists()
