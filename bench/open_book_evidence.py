"""Evidence scores with no trained model on stem1k (issue 22): how they were chosen, and what they score.

Reads the work folder of bench/open_book_ablation.py (its dense index over the 1,000 contexts, train.csv =
questions 0-799, valid.csv = 800-999). Every choice is made on questions 0-799, which no reported figure
scores (the evidence is training-free, so they are as unseen as any): the lexical score's normalisation, and
how many passages the evidence reads. Then the report set 800-999: each evidence score alone, and equal
z-scored weights, with the chosen settings; and each ablation variant's recorded blend.

    python -m bench.open_book_evidence --work runs/open-book-ablation          # ~15 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python bench/NAME.py: the root, for bench.*

CONTEXTS = ((2, 800), (3, 2000), (5, 4000), (8, 6000))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="bench/open_book_ablation.py's --work folder")
    p.add_argument("--json", type=Path)
    return p.parse_args(argv)


def normalisations(questions, freq) -> dict[str, float]:
    """MAP@3 of the lexical support divided by 1, the square root of, or the option's own IDF mass."""
    from mcq.core.metrics import map3_score
    from mcq.retrieve import lexical

    rules = {"raw": lambda h, t: h, "sqrt": lambda h, t: h / math.sqrt(t) if t else 0.0,
             "fraction": lambda h, t: h / t if t else 0.0}  # fmt: skip
    out = {}
    for name, rule in rules.items():
        rows = []
        for options, context in zip(questions.options, questions.contexts):
            found = lexical.terms(context)
            masses = [(sum(freq.idf(w) for w in t & found), sum(freq.idf(w) for w in t))
                      for t in lexical.option_terms(options)]  # fmt: skip
            rows.append([rule(h, t) for h, t in masses])
        out[name] = map3_score(np.asarray(rows), questions.answers, questions.options)
    return out


def evidence_map3(questions, scorer) -> dict[str, float]:
    from mcq.core.blend import blend_members
    from mcq.core.metrics import map3_score

    scores = scorer.scores(questions, list(scorer.kinds))
    out = {k: map3_score(v, questions.answers, questions.options) for k, v in scores.items()}
    equal = blend_members(scores, [1.0] * len(scores), questions.options)
    out["equal"] = map3_score(equal, questions.answers, questions.options)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    import dataclasses

    from mcq.cli import setup_logging
    from mcq.core.data import read_questions
    from mcq.core.evidence import scorer_for
    from mcq.core.openbook import open_book
    from mcq.retrieve.index import open_index
    from mcq.retrieve.settings import EVIDENCE_CHARS, EVIDENCE_K, ContextSettings

    setup_logging()
    index = open_index(args.work / "index")
    scorer = scorer_for(index)
    choose = read_questions(args.work / "train.csv", require_answer=True)  # questions 0-799
    report = read_questions(args.work / "valid.csv", require_answer=True)  # 800-999
    figures: dict = {"choose": {}, "report": {}, "variants": {}}
    gold = dataclasses.replace(choose, contexts=[c[:800] for c in choose.contexts or []])
    figures["choose"]["lexical normalisation (gold passage, 800 chars)"] = normalisations(gold, index.doc_freq())
    for k, chars in CONTEXTS:
        retrieved = open_book(choose, index, ContextSettings(k, chars))
        figures["choose"][f"k {k}, {chars} chars"] = evidence_map3(retrieved, scorer)
        print(f"choose k {k}/{chars}: {figures['choose'][f'k {k}, {chars} chars']}", flush=True)
    retrieved = open_book(report, index, ContextSettings(EVIDENCE_K, EVIDENCE_CHARS))
    figures["report"][f"k {EVIDENCE_K}, {EVIDENCE_CHARS} chars"] = evidence_map3(retrieved, scorer)
    for variant in sorted((args.work / "ablation").glob("*/report.json")):
        blend = json.loads(variant.read_text()).get("blend")
        if blend:
            figures["variants"][variant.parent.name] = {"choice": blend["choice"], "map3": blend["map3"],
                                                        "weights": blend["weights"]}  # fmt: skip
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
