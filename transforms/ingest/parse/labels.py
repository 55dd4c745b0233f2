"""Sample labels of per-sample files (Salmon, RSEM, STAR), where the label is in the path, not in the file."""

from __future__ import annotations

from pathlib import Path

_SUFFIXES = {
    "salmon": ("quant.sf", "quant.genes.sf"),
    "rsem": ("genes.results", "isoforms.results"),
    "star": ("ReadsPerGene.out.tab",),
}
PER_SAMPLE_FORMATS = frozenset(_SUFFIXES)
"""Formats of one sample per file, labelled by the path: two files of one assay may not give one sample."""


def sample_label_from_path(path: Path, format: str) -> str:
    """The sample label of one per-sample output file.

    A file named ``<label><sep><fixed name>`` gives ``<label>`` (``ERR188021.genes.results.gz`` -> ``ERR188021``,
    ``X.ReadsPerGene.out.tab`` / ``X_ReadsPerGene.out.tab`` -> ``X``); a file with only the tool's fixed name
    (``quant.sf``, ``quant.sf.gz``, ``genes.results``, ``ReadsPerGene.out.tab``) gives its folder's name, because
    pipelines write one folder per sample. Any other name gives the name without ``.gz`` and its last extension.
    """
    if format not in _SUFFIXES:
        raise ValueError(f"{format!r} is not a per-sample format; use one of {sorted(_SUFFIXES)}")
    name = path.name.removesuffix(".gz")
    for suffix in _SUFFIXES[format]:
        if name == suffix:
            return path.parent.name
        if name.endswith(suffix):
            return name.removesuffix(suffix).rstrip("._-") or path.parent.name
    return Path(name).stem
