"""Independent re-computation of benchmark answers from a scene's truth, for the data tests.

Each function parses one generated sentence form and answers it from the truth's boxes, labels and colours
with plain geometry, so a test can compare it with what the benchmark generator wrote.
"""

from __future__ import annotations

import math
import re

from vega3d.testing.synthetic import CATEGORIES, ObjectTruth, SceneTruth
from vega3d.testing.synthetic_benchmarks import DISTRACTOR_LABELS, plural

SENTENCE_FRAMES = re.compile(
    r"^(?:this is |find |there is |look for )?(?P<np>the .+?|all the .+?|every .+?)(?: is in the room| here| in the room)?$"
)


def distance(a: ObjectTruth, b: ObjectTruth) -> float:
    return math.hypot(a.box[0] - b.box[0], a.box[1] - b.box[1])


def with_label(truth: SceneTruth, label: str) -> list[ObjectTruth]:
    return [o for o in truth.objects if o.label == label]


def vocabulary(truth: SceneTruth) -> dict[str, str]:
    """Surface form (singular or plural) -> label, over every label the generator can name."""
    labels = {o.label for o in truth.objects} | set(CATEGORIES) | set(DISTRACTOR_LABELS)
    return {**{label: label for label in labels}, **{plural(label): label for label in labels}}


def colours(truths: list[SceneTruth]) -> set[str]:
    from vega3d.testing.synthetic_benchmarks import EXTRA_COLORS

    return {o.color for t in truths for o in t.objects} | set(EXTRA_COLORS)


def resolve_phrase(truth: SceneTruth, phrase: str, colour_words: set[str]) -> set[int]:
    """Object ids a referring noun phrase denotes in the scene."""
    forms = vocabulary(truth)
    if m := re.fullmatch(r"the tallest (.+)", phrase):
        group = with_label(truth, forms[m[1]])
        return {max(group, key=lambda o: o.box[5]).object_id}
    if m := re.fullmatch(r"the (.+?) (closest to|farthest from) the (.+)", phrase):
        (anchor,) = with_label(truth, forms[m[3]])
        group = with_label(truth, forms[m[1]])
        pick = min if m[2] == "closest to" else max
        return {pick(group, key=lambda o: distance(o, anchor)).object_id}
    if m := re.fullmatch(r"(?:all the|every) (.+)", phrase):
        return {o.object_id for o in with_label(truth, forms[m[1]])}
    m = re.fullmatch(r"the (.+)", phrase)
    words = m[1].split(" ", 1)
    colour = words[0] if words[0] in colour_words and len(words) == 2 else None
    label = forms[words[1]] if colour else forms[m[1]]
    return {o.object_id for o in with_label(truth, label) if colour is None or o.color == colour}


def referring_phrase(description: str) -> str:
    """The noun phrase of a description's first sentence."""
    first = description.split(".")[0].strip()
    match = SENTENCE_FRAMES.fullmatch(first)
    assert match, f"unexpected description form: {description!r}"
    return match["np"]


def nearest_other(truth: SceneTruth, obj: ObjectTruth) -> ObjectTruth:
    return min((o for o in truth.objects if o.object_id != obj.object_id), key=lambda o: distance(o, obj))


def agent_frame(position: dict, rotation: dict, obj: ObjectTruth) -> tuple[float, float]:
    """(forward, left) of an object's centre for an agent at ``position`` with yaw quaternion ``rotation``."""
    theta = 2.0 * math.atan2(rotation["_z"], rotation["_w"])
    dx, dy = obj.box[0] - position["x"], obj.box[1] - position["y"]
    return dx * math.cos(theta) + dy * math.sin(theta), -dx * math.sin(theta) + dy * math.cos(theta)


NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def scanqa_answer(truth: SceneTruth, question: str) -> str:
    """The expected first answer of a generated ScanQA question."""
    forms = vocabulary(truth)
    if m := re.fullmatch(r"What (?:color is|is the color of) the (.+)\?", question):
        (colour,) = {o.color for o in with_label(truth, forms[m[1]])}
        return colour
    if m := re.fullmatch(r"How many (.+) are in the room\?", question):
        return NUMBERS[len(with_label(truth, forms[m[1]]))]
    if m := re.fullmatch(r"(?:What is the (\w+) object|Which object is (\w+))\?", question):
        (obj,) = [o for o in truth.objects if o.color == (m[1] or m[2])]
        return obj.label
    if m := re.fullmatch(r"Where is the (.+) placed\?", question):
        (obj,) = with_label(truth, forms[m[1]])
        return f"next to {nearest_other(truth, obj).label}"
    if m := re.fullmatch(r"What is next to the (.+)\?", question):
        (obj,) = with_label(truth, forms[m[1]])
        return nearest_other(truth, obj).label
    raise AssertionError(f"unexpected ScanQA question {question!r}")


def sqa3d_answer(truth: SceneTruth, situation: str, question: str, position: dict, rotation: dict) -> str:
    """The expected answer of a generated SQA3D question, from the agent pose and the truth."""
    forms = vocabulary(truth)
    if question in ("What am I facing?", "What is the object in front of me?"):
        m = re.search(r"(?:facing|looking at) the (.+?)\.|The (.+?) is in front of me", situation)
        label = forms[m[1] or m[2]]
        (obj,) = with_label(truth, label)
        forward, left = agent_frame(position, rotation, obj)
        assert forward > 0 and abs(left) < 1e-6, "the faced object must lie straight ahead"
        return label
    if m := re.fullmatch(r"What is the color of the (.+)\?", question):
        (obj,) = with_label(truth, forms[m[1]])
        return obj.color
    if m := re.fullmatch(r"How many (.+) are in the room\?", question):
        return NUMBERS[len(with_label(truth, forms[m[1]]))]
    m = re.fullmatch(r"(?:Is the (.+) on my (left|right)|Which side is the (.+) on, left or right|"
                     r"Can I see the (.+) without turning around|If I turn around, will the (.+) be in front of me)\?",
                     question)
    assert m, f"unexpected SQA3D question {question!r}"
    label = forms[next(g for g in (m[1], m[3], m[4], m[5]) if g)]
    (obj,) = with_label(truth, label)
    forward, left = agent_frame(position, rotation, obj)
    side = "left" if left > 0 else "right"
    if m[1]:
        return "yes" if m[2] == side else "no"
    if m[3]:
        return side
    if m[4]:
        return "yes" if forward > 0 else "no"
    return "yes" if forward < 0 else "no"
