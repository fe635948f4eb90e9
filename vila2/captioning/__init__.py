"""Captioning: the recaption engine (batched, resumable, sharded by rank), filters with stored
scores, and the prompt sets."""
