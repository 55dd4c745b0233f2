"""Ingest: study folders and their files to harmonised rows (readers, parsers, sample and gene identity)."""
