"""The service: settings, the inline-call grammar, the engine, model backends, app and CLI."""
