"""The service over HTTP: the app, the native and OpenAI-compatible routes, their schemas,
middleware, admission, metrics and the chat UI's files."""
