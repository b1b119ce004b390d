"""Streaming spotting of facial micro- and macro-expressions (DESIGN §3)."""
