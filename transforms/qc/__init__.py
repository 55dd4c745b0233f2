"""Sample QC, embeddings and clustering on dense study blocks."""
