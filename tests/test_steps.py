"""Run folders: markers, resume after a kill, and refusing a changed recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vila2.pipeline.steps import RunFolder, StepChanged, fingerprint


def _writer(calls: list[str], name: str, value: int):
    def fn(out: Path) -> dict:
        calls.append(name)
        (out / "value.txt").write_text(str(value))
        return {"value": value}

    return fn


def test_fingerprint_ignores_key_order() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_finished_steps_are_skipped_on_rerun(tmp_path: Path) -> None:
    calls: list[str] = []
    ended: list[str] = []
    run = RunFolder(tmp_path, log=lambda _: None, on_step_end=lambda s, o: ended.append(s))
    assert run.run("a.train", {"lr": 1}, _writer(calls, "a", 1)) == {"value": 1}
    assert (tmp_path / "a" / "train" / "value.txt").read_text() == "1"
    marker = json.loads((tmp_path / "steps" / "a.train.json").read_text())
    assert marker["outputs"] == {"value": 1} and marker["inputs"] == {"lr": 1}

    again = RunFolder(tmp_path, log=lambda _: None, on_step_end=lambda s, o: ended.append(s))
    assert again.run("a.train", {"lr": 1}, _writer(calls, "a", 99)) == {"value": 1}
    assert calls == ["a"] and ended == ["a.train"] and again.ran == []
    assert again.finished() == ["a.train"]


def test_a_new_folder_object_recalls_the_finished_fingerprints(tmp_path: Path) -> None:
    calls: list[str] = []
    run = RunFolder(tmp_path, log=lambda _: None)
    run.run("a.train", {"lr": 1}, _writer(calls, "a", 1))
    run.run("a.eval", {"step a.train": run.fingerprints["a.train"]}, _writer(calls, "e", 2))
    later = RunFolder(tmp_path, log=lambda _: None)
    assert later.fingerprints == {} and later.recall_finished() == ["a.train", "a.eval"]
    assert later.fingerprints == run.fingerprints and later.ran == []


def test_killed_step_starts_over_unless_resumable(tmp_path: Path) -> None:
    run = RunFolder(tmp_path, log=lambda _: None)
    # what a killed attempt leaves: files in the step folder, no marker
    (tmp_path / "b" / "train").mkdir(parents=True)
    (tmp_path / "b" / "train" / "partial.bin").write_text("half")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "shard-0.done").write_text("done")

    seen: dict[str, list[str]] = {}

    def look(name: str):
        def fn(out: Path) -> dict:
            seen[name] = sorted(p.name for p in out.iterdir())
            return {}
        return fn

    run.run("b.train", {}, look("b"))
    run.run("c", {}, look("c"), resumable=True)
    assert seen == {"b": [], "c": ["shard-0.done"]}


def test_failed_step_leaves_no_marker(tmp_path: Path) -> None:
    run = RunFolder(tmp_path, log=lambda _: None)

    def boom(out: Path) -> dict:
        raise ValueError("no")

    with pytest.raises(ValueError):
        run.run("x", {}, boom)
    assert run.record("x") is None
    assert run.run("x", {}, lambda out: {"ok": True}) == {"ok": True}


def test_changed_inputs_are_refused_with_the_key(tmp_path: Path) -> None:
    calls: list[str] = []
    RunFolder(tmp_path, log=lambda _: None).run("r1.caption", {"filters": ["a"], "round": 1}, _writer(calls, "1", 1))
    with pytest.raises(StepChanged) as info:
        RunFolder(tmp_path, log=lambda _: None).run(
            "r1.caption", {"filters": ["b"], "round": 1}, _writer(calls, "2", 2))
    message = str(info.value)
    assert "step 'r1.caption' depends on filters which changed" in message
    assert "--rerun-changed" in message
    assert calls == ["1"]


def test_rerun_changed_reruns_the_step_and_cleans_up(tmp_path: Path) -> None:
    calls: list[str] = []
    outside = tmp_path / "outside-layer"
    first = RunFolder(tmp_path / "run", log=lambda _: None)
    first.run("s", {"k": 1}, _writer(calls, "1", 1))
    (first.dir("s") / "stale.txt").write_text("old")
    outside.write_text("layer")
    again = RunFolder(tmp_path / "run", rerun_changed=True, log=lambda _: None)
    assert again.run("s", {"k": 2}, _writer(calls, "2", 2), cleanup=outside.unlink) == {"value": 2}
    assert calls == ["1", "2"]
    assert not outside.exists()
    assert not (again.dir("s") / "stale.txt").exists()
    assert again.record("s")["inputs"] == {"k": 2}


def test_upstream_change_propagates_through_fingerprints(tmp_path: Path) -> None:
    """A step that lists an upstream fingerprint in its inputs reruns when the upstream does."""
    calls: list[str] = []

    def pipeline(folder: RunFolder, lr: int) -> None:
        folder.run("train", {"lr": lr}, _writer(calls, f"train{lr}", lr))
        folder.run("eval", {"step train": folder.fingerprints["train"]}, _writer(calls, f"eval{lr}", lr))

    pipeline(RunFolder(tmp_path, log=lambda _: None), 1)
    pipeline(RunFolder(tmp_path, log=lambda _: None), 1)
    assert calls == ["train1", "eval1"]
    pipeline(RunFolder(tmp_path, rerun_changed=True, log=lambda _: None), 2)
    assert calls == ["train1", "eval1", "train2", "eval2"]


def test_unreadable_marker_means_not_done(tmp_path: Path) -> None:
    run = RunFolder(tmp_path, log=lambda _: None)
    run.marker("z").parent.mkdir(parents=True)
    run.marker("z").write_text("{not json")
    assert run.record("z") is None
    assert run.run("z", {}, lambda out: {"fresh": 1}) == {"fresh": 1}


@pytest.mark.parametrize("step", ["round0.eval.../x", "a/b", "a..b", ".a", "a.", "/tmp/x"])
def test_step_names_cannot_leave_the_run_folder(tmp_path: Path, step: str) -> None:
    run = RunFolder(tmp_path / "run", log=lambda _: None)
    with pytest.raises(ValueError, match="bad step name"):
        run.run(step, {}, lambda out: {})
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
