"""The run ETA from simulated timings: stable within a factor of 1.5 from the first minute on."""
from __future__ import annotations

import io

import mcit_bench.engine.progress as progress
from mcit_bench.engine.progress import RunProgress


def test_eta_stays_within_a_factor_of_1_5_of_the_time_left(monkeypatch):
    # The committed lora-ft order-3 default run's shape: 6 x 550 steps whose cost differs by task (61-92 s a
    # stage), a first step that also pays the Trainer's start-up, 6 test cells per stage (caption cells dearer).
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    tasks = ["icons", "scene_caption", "chart", "count_math", "styles", "degraded_caption"]
    stage_seconds = [88.7, 61.7, 91.6, 67.7, 68.8, 69.9]
    cell_seconds = {"icons": 0.4, "scene_caption": 1.6, "chart": 0.4, "count_math": 0.4, "styles": 0.5,
                    "degraded_caption": 1.5}
    steps = 550
    display = RunProgress(tasks, {s: steps for s in range(1, 7)}, {s: 6 for s in range(7)}, enabled=True,
                          stream=io.StringIO(), out=io.StringIO())
    events = []  # (time, eta) after every event

    def cells(stage):
        for task in tasks:
            clock[0] += cell_seconds[task]
            display.cell_done(stage, task, 0.0)
            events.append((clock[0], display.eta_seconds()))
        display.stage_done(stage)

    cells(0)
    for stage, seconds in enumerate(stage_seconds, start=1):
        for step in range(1, steps + 1):
            clock[0] += seconds / steps + (2.0 if step == 1 else 0.0)
            display.train_step(stage, step)
            events.append((clock[0], display.eta_seconds()))
        cells(stage)
    end = clock[0]
    ratios = [eta / (end - t) for t, eta in events if t >= 60 and end - t > 5]
    assert ratios and all(eta is not None for t, eta in events if t >= 60)
    assert 1 / 1.5 <= min(ratios) and max(ratios) <= 1.5, (min(ratios), max(ratios))
