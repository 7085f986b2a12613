"""Evals: does the agent answer better with its tools than the model alone?

    agent-server eval math --data data/math_svamp_dev.jsonl [--limit N] [--samples K]
    agent-server eval qa --data data/squad_questions_dev.jsonl --corpus data/squad_passages.jsonl

`math` (Calculator vs no tools, and self-consistency over K samples) and `qa` (no tools,
Retrieve, Search, WebGPT mode) each load the model once, answer every question in every mode,
and write a JSON result file (provenance, settings, summary and the per-item log the summary is
computed from), a Markdown table and a PNG chart (`report`). `scoring` holds the pure rules,
`recall` retrieval recall@k, `runner` the concurrency and the progress line.
"""
