"""METEOR under a deadline: a dead or stuck JVM is a clear error, never a silent hang (issue 16)."""

import threading
import time

import pytest

from vega3d.evaluation import captions
from vega3d.evaluation.meteor import MeteorError, meteor_score

REFS = {"a": ["sos a red chair eos"], "b": ["sos a blue table eos"]}
CANDS = {"a": "sos a chair eos", "b": "sos a table eos"}


def _fake_java(tmp_path, monkeypatch, body: str) -> None:
    """A `java` first on PATH that runs ``body`` (a real process standing in for a JVM that fails)."""
    script = tmp_path / "bin" / "java"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")


def _scores_in_thread(**kwargs):
    """coco_scores in a thread joined with a deadline, so that a hang fails the test instead of freezing it."""
    out: dict = {}

    def run():
        try:
            out["scores"] = captions.coco_scores(REFS, CANDS, **kwargs)
        except Exception as error:  # noqa: BLE001 - the test inspects it
            out["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "caption scoring hung on a dead METEOR process"
    return out


def test_dead_jvm_is_a_clear_error_not_a_hang(tmp_path, monkeypatch):
    _fake_java(tmp_path, monkeypatch, 'echo "java.lang.OutOfMemoryError: Java heap space" >&2; exit 3')
    out = _scores_in_thread()
    assert isinstance(out.get("error"), MeteorError)
    assert "OutOfMemoryError" in str(out["error"]) and "exit 3" in str(out["error"])


def test_stuck_jvm_times_out(tmp_path, monkeypatch):
    _fake_java(tmp_path, monkeypatch, "exec sleep 600")
    started = time.monotonic()
    out = _scores_in_thread(meteor_timeout_s=2.0)
    assert isinstance(out.get("error"), MeteorError)
    assert "within 2 s" in str(out["error"]) and "--no-meteor" in str(out["error"])
    assert time.monotonic() - started < 30


def test_missing_java_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MeteorError, match="not on PATH"):
        meteor_score({"a": ["x"]}, {"a": ["x"]})


def test_bound_text_caps_words_and_characters():
    assert captions.bound_text("sos a .  b eos") == "sos a .  b eos"  # in bounds: spacing kept (released double spaces)
    long = captions.bound_text(" ".join(["w"] * 2000))
    assert long.split() == ["w"] * captions.MAX_WORDS
    assert captions.bound_text("x" * 1000) == "x" * captions.MAX_WORD_CHARS


def test_runaway_answer_is_bounded_before_scoring():
    """A 50 MB answer (it killed METEOR's JVM before) is cut to 512 words of 64 characters and scored."""
    huge = "chair " * 8_000_000 + "y" * 2_000_000
    scores = captions.scanqa_scores({"q1": ["chair"], "q2": ["two"]}, {"q1": huge, "q2": "two"})
    assert set(scores.corpus) >= {"meteor", "cider", "bleu1"}
    bounded = captions.scanqa_scores({"q1": ["chair"], "q2": ["two"]}, {"q1": " ".join(["chair"] * 512), "q2": "two"})
    assert scores.per_item["meteor"] == pytest.approx(bounded.per_item["meteor"])  # exactly the 512-word prefix
    assert scores.per_item["cider"] == pytest.approx(bounded.per_item["cider"])
    assert scores.per_item["meteor"][1] > 50  # the exact answer next to it still scores high
