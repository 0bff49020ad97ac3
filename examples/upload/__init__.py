"""Client streaming: upload a file in chunks; the server checks its SHA-256."""
