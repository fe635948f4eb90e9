"""Training: one accelerate loop (``trainer``), its stages, length-grouped batching and
collation with answer-only labels."""
