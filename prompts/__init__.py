"""Few-shot prompt templates (Jinja2), shipped as package data."""
