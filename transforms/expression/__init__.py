"""Expression statistics on dense study blocks: normalisation, VST, DESeq2 differential expression."""
