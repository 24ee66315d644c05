"""Inference: `infer.py` / `mcq-infer` and what the Kaggle kernel calls.

InferConfig (config.py) -> check() -> Plan (plan.py) -> run_inference (run.py): the models' logits (mcq.core),
the evidence scores and their blend (mcq.core), option-rotation TTA (tta.py), the checked submission
(submission.py). It stands on mcq.core and mcq.retrieve; training never imports it.
"""
