"""Gene-set libraries, per-sample signature scores, gene-set enrichment and signature matching."""
