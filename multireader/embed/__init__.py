"""Embeddings, maps, zero-shot and embedding-based label models."""
