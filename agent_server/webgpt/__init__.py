"""WebGPT mode: a text browser over search and pages, quotes, and the cited answer."""
