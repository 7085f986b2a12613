"""Writes the fixed GSM8K samples this project holds apart, from `gsm8k_train.jsonl`.

    gsm8k_dev.jsonl   300 problems: the dev set the math figures are reported on. No prompt
                      example and no training text may come from it.
    gsm8k_tune.jsonl  100 problems: where prompt and strategy choices were tried out (also
                      reported, so no choice rests on a set that is not shown).

Both are a seeded sample of the training file's line numbers (`id` = gsm8k-train-<line>), so
anyone can rebuild them: `python data/split_gsm8k.py` rewrites the same files. Prompt examples
(`prompts/reasoning/*.txt`) and Toolformer's corpus come from the remaining 7,073 problems;
`tests/test_gsm8k_split.py` checks that.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 19  # the number: fixed once, never tuned
DEV_SIZE = 300
TUNE_SIZE = 100


def main() -> None:
    lines = (HERE / "gsm8k_train.jsonl").read_text(encoding="utf-8").splitlines()
    order = random.Random(SEED).sample(range(len(lines)), DEV_SIZE + TUNE_SIZE)
    for name, chosen in (
        ("gsm8k_dev.jsonl", order[:DEV_SIZE]),
        ("gsm8k_tune.jsonl", order[DEV_SIZE:]),
    ):
        rows = [json.loads(lines[i]) for i in sorted(chosen)]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (HERE / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
