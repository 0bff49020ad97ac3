"""Bidirectional streaming: a chat room where every client reads and writes at once."""
