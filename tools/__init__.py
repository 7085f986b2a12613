"""The tool belt: one module per tool, the `Tool` protocol (`tools.base`), and the registry
built from settings (`tools.registry`)."""
