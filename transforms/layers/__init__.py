"""Omics layers beyond RNA: variants and mutation status, copy number, protein abundance."""
