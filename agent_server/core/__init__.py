"""The answer path: the call grammar, decoding rules, the engine, its events and the
reader's answer, prompts, reasoning strategies and their votes."""
