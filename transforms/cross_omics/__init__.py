"""Cross-omics stage: one study's harmonised layers joined per gene and sample, and statistics across them.

:mod:`~transforms.cross_omics.joins` builds ``gene_sample_omics`` lazily (polars joins over the long tables, never a
pivot of the study), :mod:`~transforms.cross_omics.blocks` runs it block by block of genes in bounded memory;
:mod:`~transforms.cross_omics.statistics` computes correlations and Welch t-tests on dense genes x samples blocks;
:mod:`~transforms.cross_omics.study` drives one study.
"""
