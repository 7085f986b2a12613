"""Toolformer's self-supervised pipeline (Schick et al., 2023): a model teaches itself tool use.

    filtering.py  the paper's loss-reduction filter, as plain arithmetic
    lm.py         a transformers causal LM scored and sampled the way the pipeline needs
    generate.py   `agent-server toolformer generate`: positions, candidates, calls, filter, JSONL

Fine-tuning on the generated texts is not built yet.
"""
