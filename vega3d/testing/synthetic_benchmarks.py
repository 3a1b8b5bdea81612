"""Raw benchmark files of the five tasks, generated from the synthetic scenes' truth.

Templates over the true labels, colours, counts and spatial relations of each scene write ScanRefer,
Multi3DRefer, ScanQA and SQA3D in their public formats (paths in ``vega3d.data.layout``; Scan2Cap uses the
ScanRefer descriptions), so every description identifies its target(s) and every answer follows from the
truth. Spatial relations are read in the aligned frame (z up) on box centres with clear margins, so no
description depends on a near-tie. Output is deterministic for a given seed.

Relations used (all on box centres, metres):
- "the L closest to / farthest from the A": A is an object whose label is unique in the scene; the target's
  xy distance to A beats every other L by at least ``DISTANCE_MARGIN``.
- "the tallest L": its height (box dz) beats every other L by at least ``SIZE_MARGIN``.
- "next to the N": N is the nearest other object (xy distance), nearer than the second by the margin.
- SQA3D: the agent stands at ``position`` facing ``forward = (cos t, sin t, 0)`` with ``rotation`` the
  quaternion of the yaw t about z; an object is "on my left" when (c - p) . left > ``SITUATION_MARGIN`` with
  left = (-sin t, cos t), "in front" when (c - p) . forward > the margin (and "behind" for < -margin).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vega3d import storage
from vega3d.data.layout import (
    MULTI3DREFER_FILE,
    SCANQA_FILE,
    SCANREFER_FILE,
    SQA3D_ANNOTATIONS_FILE,
    SQA3D_QUESTIONS_FILE,
    DataLayout,
)

if TYPE_CHECKING:
    from vega3d.config import SyntheticConfig
    from vega3d.testing.synthetic import ObjectTruth, SceneTruth

STRUCTURE_LABELS = frozenset({"wall", "floor", "ceiling"})
# Labels used for zero-target Multi3DRefer queries when a scene lacks them (besides the other scenes' labels).
DISTRACTOR_LABELS = ("bathtub", "refrigerator", "toilet", "piano", "bicycle", "microwave", "oven", "sink")
EXTRA_COLORS = ("red", "green", "blue", "yellow", "white", "black", "brown", "gray", "orange", "purple", "pink")
DISTANCE_MARGIN = 0.3
SIZE_MARGIN = 0.1
SITUATION_MARGIN = 0.3
NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)
QA_SPLITS = ("train", "val")
SQA3D_SPLITS = ("train", "val", "test")
SQA3D_ID_OFFSET = {"train": 0, "val": 1_000_000, "test": 2_000_000}


def plural(label: str) -> str:
    """English plural of a label: chair -> chairs, shelf -> shelves, box -> boxes."""
    if label.endswith(("s", "x", "sh", "ch")):
        return label + "es"
    if label.endswith("f"):
        return label[:-1] + "ves"
    if label.endswith("y") and len(label) > 1 and label[-2] not in "aeiou":
        return label[:-1] + "ies"
    return label + "s"


def number_word(n: int) -> str:
    """0..20 as a word, larger numbers as digits."""
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def tokenize(text: str) -> list[str]:
    """ScanRefer-style token list: punctuation split off, whitespace split."""
    for mark in (".", ",", "?", "!"):
        text = text.replace(mark, f" {mark} ")
    return text.split()


def _xy_distance(a: ObjectTruth, b: ObjectTruth) -> float:
    return float(math.hypot(a.box[0] - b.box[0], a.box[1] - b.box[1]))


@dataclass
class SceneFacts:
    """The describable objects of one scene and the relations between them."""

    truth: SceneTruth
    objects: list[ObjectTruth] = field(init=False)
    counts: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.objects = [o for o in self.truth.objects if o.label not in STRUCTURE_LABELS]
        self.counts = Counter(o.label for o in self.objects)

    def with_label(self, label: str) -> list[ObjectTruth]:
        return [o for o in self.objects if o.label == label]

    def anchors(self) -> list[ObjectTruth]:
        """Objects whose label occurs once: they can be named by their label alone."""
        return [o for o in self.objects if self.counts[o.label] == 1]

    def colour_unique_in_label(self, obj: ObjectTruth) -> bool:
        return sum(o.color == obj.color for o in self.with_label(obj.label)) == 1

    def extreme_by_distance(self, obj: ObjectTruth, anchor: ObjectTruth) -> str | None:
        """'closest' / 'farthest' when ``obj`` is clearly the nearest / farthest of its label to ``anchor``."""
        others = [_xy_distance(o, anchor) for o in self.with_label(obj.label) if o.object_id != obj.object_id]
        if not others:
            return None
        mine = _xy_distance(obj, anchor)
        if mine + DISTANCE_MARGIN <= min(others):
            return "closest"
        if mine - DISTANCE_MARGIN >= max(others):
            return "farthest"
        return None

    def tallest(self, obj: ObjectTruth) -> bool:
        others = [o.box[5] for o in self.with_label(obj.label) if o.object_id != obj.object_id]
        return bool(others) and obj.box[5] - SIZE_MARGIN >= max(others)

    def nearest(self, obj: ObjectTruth) -> ObjectTruth | None:
        """The clearly nearest other object (xy distance), or None on a near-tie."""
        others = sorted((o for o in self.objects if o.object_id != obj.object_id), key=lambda o: _xy_distance(o, obj))
        if not others:
            return None
        if len(others) > 1 and _xy_distance(others[1], obj) - _xy_distance(others[0], obj) < DISTANCE_MARGIN:
            return None
        return others[0]

    def identifying_phrases(self, obj: ObjectTruth) -> list[str]:
        """Noun phrases that pick out ``obj`` alone among the objects of its label."""
        label, colour = obj.label, obj.color
        if self.counts[label] == 1:
            return [f"the {label}", f"the {colour} {label}"]
        phrases = []
        if self.colour_unique_in_label(obj):
            phrases.append(f"the {colour} {label}")
        for anchor in self.anchors():
            if anchor.label == label:
                continue
            relation = self.extreme_by_distance(obj, anchor)
            if relation == "closest":
                phrases.append(f"the {label} closest to the {anchor.label}")
            elif relation == "farthest":
                phrases.append(f"the {label} farthest from the {anchor.label}")
        if self.tallest(obj):
            phrases.append(f"the tallest {label}")
        return phrases


# ----------------------------------------------------------------------------------------------------------
# ScanRefer
# ----------------------------------------------------------------------------------------------------------
def _scanrefer_sentence(rng: random.Random, facts: SceneFacts, obj: ObjectTruth, phrase: str) -> str:
    near = facts.nearest(obj)
    options = [
        f"this is {phrase}.",
        f"{phrase} is in the room. it is {obj.color}.",
        f"find {phrase}. the {obj.label} is {obj.color}.",
    ]
    if near is not None:
        options += [
            f"{phrase}. it is next to the {near.label}.",
            f"there is {phrase} here. it is {obj.color} and it is next to the {near.label}.",
        ]
    return rng.choice(options)


def scanrefer_entries(truth: SceneTruth, rng: random.Random, per_object: int = 2) -> list[dict[str, Any]]:
    """ScanRefer records of one scene: up to ``per_object`` descriptions of each describable object."""
    facts = SceneFacts(truth)
    entries = []
    for obj in facts.objects:
        phrases = facts.identifying_phrases(obj)
        rng.shuffle(phrases)
        for ann_id, phrase in enumerate(phrases[:per_object]):
            description = _scanrefer_sentence(rng, facts, obj, phrase)
            entries.append({
                "scene_id": truth.scene,
                "object_id": str(obj.object_id),
                "object_name": obj.label.replace(" ", "_"),
                "ann_id": str(ann_id),
                "description": description,
                "token": tokenize(description),
            })
    return entries


# ----------------------------------------------------------------------------------------------------------
# Multi3DRefer
# ----------------------------------------------------------------------------------------------------------
def _m3d_sentence(rng: random.Random, phrase: str) -> str:
    return rng.choice([f"{phrase}.", f"look for {phrase}.", f"find {phrase} in the room."])


def multi3drefer_entries(
    truth: SceneTruth, rng: random.Random, vocabulary: Sequence[str], colours: Sequence[str]
) -> list[dict[str, Any]]:
    """Multi3DRefer records of one scene covering every eval type the scene allows."""
    facts = SceneFacts(truth)
    queries: list[tuple[str, list[int], str]] = []  # (phrase, target ids, eval type)
    absent = sorted(set(vocabulary) - set(facts.counts))
    for label in rng.sample(absent, k=min(2, len(absent))):
        queries.append((rng.choice([f"the {rng.choice(colours)} {label}", f"the {label}"]), [], "zt_wo_d"))
    for label in sorted(facts.counts):
        group = facts.with_label(label)
        unused = sorted(set(colours) - {o.color for o in group})
        if unused and rng.random() < 0.5:
            queries.append((f"the {rng.choice(unused)} {label}", [], "zt_w_d"))
        if len(group) == 1:
            obj = group[0]
            queries.append((rng.choice([f"the {label}", f"the {obj.color} {label}"]), [obj.object_id], "st_wo_d"))
            continue
        ids = [o.object_id for o in group]
        queries.append((rng.choice([f"all the {plural(label)}", f"every {label}"]), ids, "mt"))
        by_colour = Counter(o.color for o in group)
        for colour, n in sorted(by_colour.items()):
            members = [o.object_id for o in group if o.color == colour]
            if n >= 2 and n < len(group):
                queries.append((f"the {colour} {plural(label)}", members, "mt"))
            elif n == 1:
                queries.append((f"the {colour} {label}", members, "st_w_d"))
        for obj in group:
            spatial = [p for p in facts.identifying_phrases(obj) if " to the " in p or " from the " in p]
            if spatial:
                queries.append((rng.choice(spatial), [obj.object_id], "st_w_d"))
    return [
        {"scene_id": truth.scene, "object_ids": sorted(ids), "description": _m3d_sentence(rng, phrase),
         "ann_id": ann_id, "eval_type": eval_type}
        for ann_id, (phrase, ids, eval_type) in enumerate(queries)
    ]


# ----------------------------------------------------------------------------------------------------------
# ScanQA
# ----------------------------------------------------------------------------------------------------------
def scanqa_entries(truth: SceneTruth, split: str, rng: random.Random, max_questions: int = 10) -> list[dict[str, Any]]:
    """ScanQA records of one scene: colour, count, identity and location questions."""
    facts = SceneFacts(truth)
    items: list[tuple[str, list[str], list[ObjectTruth]]] = []
    colour_counts = Counter(o.color for o in facts.objects)
    for label in sorted(facts.counts):
        group = facts.with_label(label)
        if len({o.color for o in group}) == 1:
            question = rng.choice([f"What color is the {label}?", f"What is the color of the {label}?"])
            items.append((question, [group[0].color], group))
        n = len(group)
        items.append((f"How many {plural(label)} are in the room?", [number_word(n), str(n)], group))
    for obj in facts.objects:
        if colour_counts[obj.color] == 1:
            items.append((rng.choice([f"What is the {obj.color} object?", f"Which object is {obj.color}?"]),
                          [obj.label], [obj]))
        near = facts.nearest(obj)
        if near is not None and facts.counts[obj.label] == 1:
            items.append((f"Where is the {obj.label} placed?", [f"next to {near.label}", near.label], [obj, near]))
        if near is not None and facts.counts[obj.label] == 1 and rng.random() < 0.5:
            items.append((f"What is next to the {obj.label}?", [near.label], [obj, near]))
    rng.shuffle(items)
    return [
        {"question_id": f"{split}-{truth.scene}-{k}", "scene_id": truth.scene, "question": question,
         "answers": answers, "object_ids": [o.object_id for o in objects],
         "object_names": [o.label for o in objects]}
        for k, (question, answers, objects) in enumerate(items[:max_questions])
    ]


# ----------------------------------------------------------------------------------------------------------
# SQA3D
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Situation:
    """An agent standing at ``position`` (aligned frame) facing yaw ``theta`` (radians from +x)."""

    position: tuple[float, float, float]
    theta: float
    anchor: ObjectTruth
    facing: ObjectTruth

    def frame(self, obj: ObjectTruth) -> tuple[float, float]:
        """(forward, left) coordinates of an object's centre relative to the agent."""
        dx, dy = obj.box[0] - self.position[0], obj.box[1] - self.position[1]
        c, s = math.cos(self.theta), math.sin(self.theta)
        return dx * c + dy * s, -dx * s + dy * c

    def quaternion(self) -> dict[str, float]:
        return {"_x": 0.0, "_y": 0.0, "_z": math.sin(self.theta / 2), "_w": math.cos(self.theta / 2)}


def _place_agent(rng: random.Random, anchor: ObjectTruth, facing: ObjectTruth, floor: float) -> Situation:
    ax, ay = anchor.box[0], anchor.box[1]
    direction = np.array([facing.box[0] - ax, facing.box[1] - ay])
    direction /= max(np.linalg.norm(direction), 1e-6)
    side = np.array([-direction[1], direction[0]]) * rng.choice([-1.0, 1.0])
    step = max(anchor.box[3], anchor.box[4]) / 2 + 0.4
    px, py = ax + side[0] * step, ay + side[1] * step
    theta = math.atan2(facing.box[1] - py, facing.box[0] - px)
    return Situation((float(px), float(py), float(floor)), theta, anchor, facing)


def _situation_texts(rng: random.Random, s: Situation) -> tuple[str, list[str]]:
    a, f = s.anchor.label, s.facing.label
    texts = [
        f"I am standing beside the {a} and facing the {f}.",
        f"I stand next to the {a} while looking at the {f}.",
        f"The {f} is in front of me and the {a} is right beside me.",
        f"I have just walked to the {a} and I am now facing the {f}.",
    ]
    rng.shuffle(texts)
    return texts[0], texts[1:]


def _situation_questions(rng: random.Random, facts: SceneFacts, s: Situation) -> list[tuple[str, str, str]]:
    """(question, answer, answer_type) triples answerable from the situation and the truth."""
    items = [(rng.choice(["What am I facing?", "What is the object in front of me?"]), s.facing.label, "other")]
    for obj in facts.anchors():
        if obj.object_id in (s.anchor.object_id, s.facing.object_id):
            continue
        label = obj.label
        forward, left = s.frame(obj)
        items.append((f"What is the color of the {label}?", obj.color, "other"))
        if abs(left) > SITUATION_MARGIN:
            side = "left" if left > 0 else "right"
            asked = rng.choice(["left", "right"])
            items.append((f"Is the {label} on my {asked}?", "yes" if asked == side else "no", "yes/no"))
            items.append((f"Which side is the {label} on, left or right?", side, "other"))
        if abs(forward) > SITUATION_MARGIN:
            ahead = forward > 0
            items.append((f"Can I see the {label} without turning around?", "yes" if ahead else "no", "yes/no"))
            items.append((f"If I turn around, will the {label} be in front of me?", "no" if ahead else "yes", "yes/no"))
    for label in sorted(facts.counts):
        items.append((f"How many {plural(label)} are in the room?", number_word(facts.counts[label]), "number"))
    return items


def sqa3d_entries(
    truth: SceneTruth, rng: random.Random, next_id: int, situations: int = 2, per_situation: int = 5
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(questions, annotations) of one scene in the SQA3D structure; question ids count up from ``next_id``."""
    facts = SceneFacts(truth)
    anchors = facts.anchors()
    if len(anchors) < 2:
        return [], []
    floor = min(o.box[2] - o.box[5] / 2 for o in facts.objects)
    questions, annotations = [], []
    for _ in range(situations):
        anchor, facing = rng.sample(anchors, 2)
        situation = _place_agent(rng, anchor, facing, floor)
        text, alternatives = _situation_texts(rng, situation)
        items = _situation_questions(rng, facts, situation)
        rng.shuffle(items)
        for question, answer, answer_type in items[:per_situation]:
            qid = next_id
            next_id += 1
            questions.append({"question_id": qid, "scene_id": truth.scene, "situation": text,
                              "alternative_situation": alternatives, "question": question})
            annotations.append({
                "question_id": qid, "scene_id": truth.scene, "answer_type": answer_type,
                "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": 1}],
                "position": dict(zip("xyz", situation.position, strict=True)), "rotation": situation.quaternion(),
            })
    return questions, annotations


# ----------------------------------------------------------------------------------------------------------
# All files
# ----------------------------------------------------------------------------------------------------------
def _rng(seed: int, task: str, scene: str) -> random.Random:
    return random.Random(f"{seed}/{task}/{scene}")


def generate_benchmarks(truths: Sequence[SceneTruth], seed: int = 0) -> dict[str, Any]:
    """Every raw benchmark file as {path relative to the data root: JSON content}; pure and deterministic."""
    vocabulary = sorted({o.label for t in truths for o in t.objects} - STRUCTURE_LABELS | set(DISTRACTOR_LABELS))
    colours = sorted({o.color for t in truths for o in t.objects} | set(EXTRA_COLORS))
    files: dict[str, Any] = {}
    for split in QA_SPLITS:
        scenes = sorted((t for t in truths if t.split == split), key=lambda t: t.scene)
        files[SCANREFER_FILE.format(split=split)] = [
            e for t in scenes for e in scanrefer_entries(t, _rng(seed, "scanrefer", t.scene))]
        files[MULTI3DREFER_FILE.format(split=split)] = [
            e for t in scenes for e in multi3drefer_entries(t, _rng(seed, "multi3drefer", t.scene), vocabulary, colours)]
        files[SCANQA_FILE.format(split=split)] = [
            e for t in scenes for e in scanqa_entries(t, split, _rng(seed, "scanqa", t.scene))]
    for split in SQA3D_SPLITS:
        questions: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        next_id = SQA3D_ID_OFFSET[split]
        for t in sorted((t for t in truths if t.split == split), key=lambda t: t.scene):
            q, a = sqa3d_entries(t, _rng(seed, "sqa3d", t.scene), next_id)
            questions += q
            annotations += a
            next_id += len(q)
        files[SQA3D_QUESTIONS_FILE.format(split=split)] = {"questions": questions}
        files[SQA3D_ANNOTATIONS_FILE.format(split=split)] = {"annotations": annotations}
    return files


def write_benchmarks(root: str | Path, truths: Sequence[SceneTruth], seed: int = 0) -> list[Path]:
    """Write every raw benchmark file under ``root`` (atomically); returns the paths written."""
    layout = DataLayout(root)
    written = []
    for relative, content in generate_benchmarks(truths, seed).items():
        path = layout.root / relative
        storage.write_json(str(path), content, indent=1)
        written.append(path)
    return written


def synthesize_root(root: Path, cfg: SyntheticConfig) -> int:
    """Write the synthetic scenes and their raw benchmark files; returns the number of scenes."""
    from vega3d.testing.synthetic import synthesize_scenes

    truths = synthesize_scenes(root, cfg)
    write_benchmarks(root, truths, cfg.seed)
    return len(truths)
