"""Toolformer's self-supervised pipeline (Schick et al., 2023): a model teaches itself tool use.

filtering.py  the paper's loss-reduction filter, as plain arithmetic
lm.py         the model, scored and sampled through a backend's sessions
generate.py   `agent-server toolformer generate`: positions, candidates, calls, filter, JSONL
finetune.py   `agent-server toolformer finetune`: LoRA or full, checkpoints, early stopping
config.py     fine-tuning's settings
"""
