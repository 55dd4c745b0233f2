"""Study-level expression driver: one study's long table -> one dense block -> long result rows.

The statistics of :mod:`transforms.expression.normalise` and :mod:`transforms.expression.differential` work on a
dense block (one row per feature, one column per sample). :func:`dense_block` builds it once per study and assay
from the harmonised long table in a canonical order (features by gene_id, samples by id), streaming the rows into a
Fortran-order array, so a block of sample columns is contiguous; a study too big for memory goes into a ``np.memmap``
in a temporary folder. The fit passes then run over blocks of ``width`` sample columns (edgeR / DESeq2 reference
statistics of the whole study), and the transform pass yields long frames of a few million rows each, for the writer
to stage file by file. Apart from the distinct feature and sample ids, nothing here is a group-by over the long
table, and nothing writes.

Counts: a feature with a missing cell (its row was quarantined at ingest) is left out of every statistic, and a
sample without counts gets a factor row with NULL factors but no expression rows; both are reported by
:class:`CountModel`. Fractional (estimated) counts are rounded for the DESeq2 figures (size factors, VST, DE), as
tximport users do, and used as they are for edgeR's library sizes, TMM and CPM.
"""

from __future__ import annotations

import functools
import itertools
import os
import tempfile
import threading
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl

from schemas.manifest import Contrast, ZscoreReference
from transforms.expression import normalise
from transforms.expression.differential import (
    DEResult,
    DesignError,
    canonical_sample_order,
    check_design,
    differential_expression,
)

DEFAULT_WIDTH = 2000
"""Sample columns per block of the fit and transform passes."""

IN_MEMORY_BYTES = 2 << 30
"""Dense blocks larger than this (2 GiB of float64) go into a memory map on disk."""

BATCH_ROWS = 4_000_000
"""Long rows read at a time when a dense block is built."""

FRAME_ROWS = 2_000_000
"""Target rows of one long result frame (one staged Parquet file)."""

VST_NSUB = 1000
"""Genes DESeq2's ``vst`` fits its dispersion trend on."""

LOG_SCALE_MEASURES = frozenset({"microarray", "log2"})
"""Abundance measures already on a log2 scale (array intensities): their log2_value is the value as given, as
cBioPortal computes its array z-scores without a log transform."""

COUNT_ONLY = ("cpm", "log2_cpm", "tmm_cpm", "mor")
"""rna_normalized columns defined only for counts (NULL for abundance rows)."""

SOURCE = pl.Enum(["counts", "abundance"])
"""rna_normalized.source of the long frames, dictionary-coded as their identifiers are (:func:`_long_frames`)."""


@dataclass(frozen=True)
class DenseBlock:
    """One study assay as a dense block: ``values[i, j]`` is feature ``i`` in sample ``j``, NaN where no row was.

    ``feature_ids`` / ``gene_ids`` label the rows (every feature, mapped or not), ``sample_ids`` the columns.
    """

    values: np.ndarray
    feature_ids: pl.Series
    gene_ids: pl.Series
    sample_ids: pl.Series
    lengths: np.ndarray | None = None

    @functools.cached_property
    def coded_feature_ids(self) -> pl.Series:
        """``feature_ids`` as an Enum of themselves: a row's id is its row number (gathered without copying text)."""
        return self.feature_ids.cast(pl.Enum(self.feature_ids))

    @functools.cached_property
    def coded_sample_ids(self) -> pl.Series:
        """``sample_ids`` as an Enum of themselves (see ``coded_feature_ids``)."""
        return self.sample_ids.cast(pl.Enum(self.sample_ids))


def dense_block(records: pl.LazyFrame, *, value: str, workdir: str | Path | None = None,
                in_memory_bytes: int = IN_MEMORY_BYTES) -> DenseBlock:
    """Stream a long table (``sample_id``, ``feature_id``, ``gene_id``, ``value``) into one dense block.

    Rows are sorted by gene_id (a feature's smallest; unmapped features last), then feature_id, and columns by
    sample_id, whatever order the rows come in: every statistic of the block (sums over genes or samples, ties
    broken by position) is then the same bit for bit however the table was written or scanned (an unordered join
    or a parallel scan reorders rows between runs), and the long tables written from the block are in gene order
    (:func:`_long_frames`). The block is a Fortran-order float64 array, or a memory map in ``workdir`` when it needs
    more than ``in_memory_bytes``. A ``length`` column with any value (counts of featureCounts, Salmon, RSEM) fills
    a second block of the same shape for TPM.

    One pass over the table (:class:`_GrowingBlock`): each row's identifiers become codes of a fresh polars
    ``Categories`` (numbered as first seen), its value goes to that cell of a block that grows as codes appear, and
    the block is put in the canonical order in place at the end. The identifiers are not read twice more to be
    counted and sorted first (two group-bys over the long table: ~30 % of the time before).
    """
    rows_at_most = records.select(pl.len()).collect().item()  # from the files' footers for a plain scan
    # gene_id and length ride along only when some row has one (each costs its batches' memory: ~0.1 GB in flight)
    given = records.select(pl.col(c).is_not_null().any() for c in ("gene_id", "length")
                           if c in records.collect_schema()).collect()
    with_gene, with_length = (c in given.columns and bool(given[c].item()) for c in ("gene_id", "length"))
    builder = DenseBlockBuilder(workdir=workdir, in_memory_bytes=in_memory_bytes, cells=rows_at_most)
    try:
        for batch in builder.coded(records, value=value, with_gene=with_gene, with_length=with_length
                                   ).collect_batches(chunk_size=BATCH_ROWS):
            builder.add(batch)
        return builder.finish()
    finally:
        builder.close()


class DenseBlockBuilder:
    """:func:`dense_block`'s one pass, a batch at a time, for a caller that holds the rows as they stream by.

    :meth:`coded` turns long rows into codes of this builder's fresh polars ``Categories`` (numbered as first
    seen); :meth:`add` writes a batch of them into a :class:`_GrowingBlock`; :meth:`finish` puts the block in the
    canonical order. The ingest hands the rna_counts rows it writes to one (``warehouse.load``), so the QC and
    normalise stages of the same process need not read them back: whatever the batches and their order, the block
    is the one :func:`dense_block` of the written rows returns. A batch without any gene id or length adds none,
    so asking for ``gene_id`` / ``length`` that no row has gives the block of a frame without them.
    """

    def __init__(self, *, workdir: str | Path | None = None, in_memory_bytes: int = IN_MEMORY_BYTES,
                 cells: int = 0) -> None:
        self.features, self.samples = pl.Categories.random(), pl.Categories.random()
        # a mapping lives while its type does
        self._alive = [pl.Series(dtype=pl.Categorical(c)) for c in (self.features, self.samples)]
        self.block = _GrowingBlock(workdir, in_memory_bytes, cells=cells)
        self.gene = np.full(0, _NO_GENE)
        self.mapped = np.zeros(0, dtype=bool)

    def coded(self, records: pl.LazyFrame, *, value: str, with_gene: bool = True,
              with_length: bool = True) -> pl.LazyFrame:
        """``records`` (``feature_id``, ``sample_id``, ``value``, ``gene_id``, ``length``) as the batches
        :meth:`add` takes: rows without an id left out, ids as codes of this builder's categories.
        """
        records = records.filter(pl.col("feature_id").is_not_null(), pl.col("sample_id").is_not_null())
        return records.select(
            pl.col("feature_id").cast(pl.Categorical(self.features)).to_physical().alias("_row"),
            pl.col("sample_id").cast(pl.Categorical(self.samples)).to_physical().alias("_col"),
            pl.col(value).cast(pl.Float64).alias("_value"),
            *([pl.col("gene_id").cast(pl.Int64).alias("_gene")] if with_gene else []),
            *([pl.col("length").cast(pl.Float64).alias("_length")] if with_length else []))

    def add(self, batch: pl.DataFrame) -> None:
        """Write one batch of :meth:`coded` rows into the block."""
        if batch.height == 0:
            return
        rows, cols = batch["_row"].to_numpy(), batch["_col"].to_numpy()
        n_rows = int(rows.max()) + 1
        if self.gene.size < n_rows:
            self.gene = np.concatenate([self.gene, np.full(n_rows - self.gene.size, _NO_GENE)])
            self.mapped = np.concatenate([self.mapped, np.zeros(n_rows - self.mapped.size, dtype=bool)])
        genes = batch["_gene"] if "_gene" in batch.columns else None
        if genes is not None and genes.null_count() < genes.len():  # a feature's gene: its rows' smallest (min())
            np.minimum.at(self.gene, rows, genes.fill_null(_NO_GENE).to_numpy())
            self.mapped[rows[genes.is_not_null().to_numpy()] if genes.null_count() else rows] = True
        lengths = batch["_length"] if "_length" in batch.columns else None
        self.block.put(rows, cols, batch["_value"].to_numpy(),
                       None if lengths is None or lengths.null_count() == lengths.len() else lengths.to_numpy())

    def finish(self) -> DenseBlock:
        """The block of every batch added, rows and columns in the canonical order (see :func:`dense_block`)."""
        gene, mapped, block = self.gene, self.mapped, self.block
        n_features, n_samples = gene.size, block.cols
        feature_ids, sample_ids = _code_names(self.features, n_features), _code_names(self.samples, n_samples)
        order = (pl.DataFrame({"feature_id": feature_ids, "gene_id": pl.Series(gene).set(pl.Series(~mapped), None),
                               "_code": np.arange(n_features)})
                 .drop_nulls("feature_id").sort("gene_id", "feature_id", nulls_last=True))
        columns = (pl.DataFrame({"sample_id": sample_ids, "_code": np.arange(n_samples)})
                   .drop_nulls("sample_id").sort("sample_id"))
        values, length_block = block.finish(order["_code"].to_numpy(), columns["_code"].to_numpy())
        return DenseBlock(values, order["feature_id"], order["gene_id"], columns["sample_id"], length_block)

    def close(self) -> None:
        """Close the files of the block's memory maps, if any (see :meth:`_GrowingBlock.close`)."""
        self.block.close()


_NO_GENE = np.iinfo(np.int64).max
"""gene_id of a feature without one while a dense block is read (``mapped`` tells it from a real id)."""


def _code_names(categories: pl.Categories, n: int) -> pl.Series:
    """The strings of codes ``0 .. n - 1`` of ``categories`` (NULL for a code reserved but never named), checked."""
    names = categories.to_series().head(n)
    if names.len() < n:
        raise RuntimeError(f"polars categories hold {names.len()} strings for {n} codes")
    named = names.is_not_null()
    codes = names.filter(named).cast(pl.Categorical(categories)).to_physical().to_numpy()
    if not np.array_equal(codes, np.flatnonzero(named.to_numpy())):
        raise RuntimeError("polars categories are not numbered by their position")
    return names.rename("")


CHUNK_CELLS = 1 << 19
"""Cells (4 MiB of float64) moved at a time when a dense block is put in order."""

RESERVE_BYTES = 1 << 34
"""Most address space reserved for a block held in memory (only the cells used are ever touched)."""

SHARED_BLOCK_BYTES = 512 << 20
"""Largest dense block (values and lengths) :func:`shared_dense_block` / :func:`keep_shared_block` keep for a later
stage of the same process (20,000 features x ~3,300 samples of float64)."""

_shared: dict[tuple[Hashable, ...], DenseBlock] = {}
_shared_lock = threading.Lock()


def shared_dense_block(records: pl.LazyFrame, *, value: str, key: tuple[Hashable, ...] | None, keep: bool,
                       workdir: str | Path | None = None) -> DenseBlock:
    """:func:`dense_block` of ``records``, or the block an earlier call with the same ``key`` kept.

    Lets stages of one build process share one read of a table: the ingest's count block, built from the rows it
    wrote (:class:`DenseBlockBuilder`, :func:`keep_shared_block`), then sample QC and normalisation (the same
    rna_counts rows); normalisation's VST block, then the structure stage. ``key`` must
    name the rows exactly and never be reused for other rows: the table, its Delta version, the study, the assay,
    the samples left out (None: no sharing). ``keep=True`` keeps the block built for a later call (one block per
    process, only an in-memory one of at most ``SHARED_BLOCK_BYTES``); a call with ``keep=False`` takes the block
    out, so it is held only from the stage that read it to the one that reuses it (a block found with ``keep=True``
    stays kept: ingest -> QC -> normalisation). Any call with another key drops the kept block. A kept block is
    read-only (its arrays cannot be written), for the stage that made it and the ones that take it.
    """
    if key is None:
        return dense_block(records, value=value, workdir=workdir)
    with _shared_lock:
        block = _shared.pop(key, None)
        _shared.clear()
        if block is not None and keep:  # the ingest's count block, kept on for normalisation
            _shared[key] = block
    if block is not None:
        return block
    block = dense_block(records, value=value, workdir=workdir)
    if keep:
        keep_shared_block(key, block)
    return block


def keep_shared_block(key: tuple[Hashable, ...], block: DenseBlock) -> bool:
    """Keep ``block`` for the next :func:`shared_dense_block` call with ``key`` in this process (dropping any other),
    when it is in memory and at most ``SHARED_BLOCK_BYTES``; whether it was kept. Its arrays become read-only.

    ``key`` must name exactly the rows the block holds (what :func:`dense_block` of them would return, bit for bit):
    sample QC keeps the count block it read; normalisation keeps the VST block it computed and wrote, under the key
    of the rna_vst rows its commit made (known only once committed), for the structure stage.
    """
    arrays = [a for a in (block.values, block.lengths) if a is not None]
    if sum(a.nbytes for a in arrays) > SHARED_BLOCK_BYTES or any(isinstance(a, np.memmap) for a in arrays):
        return False
    for array in arrays:
        array.flags.writeable = False
    with _shared_lock:
        _shared.clear()
        _shared[key] = block
    return True


def drop_shared_blocks() -> None:
    """Forget the block :func:`shared_dense_block` or :func:`keep_shared_block` kept, if any (its memory goes when
    no one else holds it): a stage that would have taken it but has nothing to do frees it at once.
    """
    with _shared_lock:
        _shared.clear()


class _GrowingBlock:
    """A NaN-filled block filled by (row code, column code) while the codes are being discovered.

    Kept as the memory of a Fortran-order block: one line of ``stride`` cells per column code, in one flat buffer
    reserved once (address space only: a page is touched when a cell of it is), so new columns take the next lines.
    The first batch gets room for ``cells`` (the table's rows: an upper bound of the cells written) over its
    samples, as a table stored gene by gene needs; when the second batch brings no new feature (stored sample by
    sample), the first batch's lines move to a stride of the rows seen. More rows than the stride move the lines to
    a wider one in place. No cell is copied into fresh memory (touching a page costs as much here as filling it),
    and no batch is held. A block of more than ``in_memory_bytes`` is a memory map of an unnamed file in
    ``workdir``, extended as it grows.
    """

    def __init__(self, workdir: str | Path | None, in_memory_bytes: int, *, cells: int) -> None:
        self.workdir, self.limit, self.cells = workdir, in_memory_bytes, cells
        self.rows = self.cols = self.stride = self.batches = 0
        self.buffers: dict[str, np.ndarray] = {}
        self.files: dict[str, IO[bytes]] = {}

    def put(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, lengths: np.ndarray | None) -> None:
        """Write one batch (its codes, values and lengths) into its cells."""
        n_rows, n_cols = int(rows.max()) + 1, int(cols.max()) + 1
        self.batches += 1
        if self.batches == 1:
            self.stride = max(n_rows, -(-self.cells // n_cols))
        elif self.batches == 2 and n_rows <= self.rows < self.stride:  # no new feature: stored sample by sample
            for name in list(self.buffers):
                self.buffers[name] = self._grown(name, self.rows, self.cols, self.rows)
            self.stride = self.rows
        self._reserve(n_rows, n_cols)
        if "values" not in self.buffers:
            self.buffers["values"] = self._grown("values", self.rows, self.cols, self.stride, new=True)
        self._lines("values")[cols, rows] = values
        if lengths is not None and "lengths" not in self.buffers:
            self.buffers["lengths"] = self._grown("lengths", self.rows, self.cols, self.stride, new=True)
        if "lengths" in self.buffers:
            self._lines("lengths")[cols, rows] = np.nan if lengths is None else lengths

    def _reserve(self, rows: int, cols: int) -> None:
        rows, cols = max(rows, self.rows), max(cols, self.cols)
        if rows == self.rows and cols == self.cols:
            return
        stride = self.stride if rows <= self.stride else max(rows, 2 * self.stride)
        for name in list(self.buffers):
            self.buffers[name] = self._grown(name, rows, cols, stride)
        self.rows, self.cols, self.stride = rows, cols, stride

    def _lines(self, name: str) -> np.ndarray:
        return self.buffers[name][:self.cols * self.stride].reshape(self.cols, self.stride)

    def _grown(self, name: str, rows: int, cols: int, stride: int, *, new: bool = False) -> np.ndarray:
        """The buffer ``name`` laid out for ``rows`` x ``cols`` at ``stride``, cells not used before NaN."""
        old_rows, old_cols, old_stride = (0, 0, stride) if new else (self.rows, self.cols, self.stride)
        buffer = self._room(name, cols * stride, old_cols * old_stride)
        if stride != old_stride:  # wider lines move last first, narrower ones first first: none overwrites another
            for j in (range(old_cols - 1, 0, -1) if stride > old_stride else range(1, old_cols)):
                buffer[j * stride:j * stride + old_rows] = buffer[j * old_stride:j * old_stride + old_rows]
        if rows > old_rows and old_cols:
            buffer[:old_cols * stride].reshape(old_cols, stride)[:, old_rows:rows] = np.nan
        if cols > old_cols:
            buffer[old_cols * stride:cols * stride].reshape(cols - old_cols, stride)[:, :rows] = np.nan
        return buffer

    def _room(self, name: str, cells: int, used: int) -> np.ndarray:
        """The buffer ``name`` with at least ``cells`` cells, its first ``used`` kept."""
        old = self.buffers.get(name)
        if old is not None and old.size >= cells:
            return old
        budget = min(self.limit, RESERVE_BYTES)
        if old is None and 8 * max(cells, self.cells) <= budget:  # reserved once: never moves
            return np.empty(budget // 8)
        if self.workdir is None:
            raise ValueError(f"a block of {max(cells, self.cells)} cells needs more than {self.limit} bytes: "
                             "pass a workdir for its memory map")
        size = max(cells, 2 * (0 if old is None else old.size))
        handle = self.files.get(name)
        if handle is None:  # unnamed: two blocks in one workdir never share a file; its space goes with the map
            self.files[name] = handle = tempfile.TemporaryFile(dir=self.workdir)  # noqa: SIM115 (closed by close)
        os.ftruncate(handle.fileno(), 8 * size)  # a sparse file: only the cells written take disk
        mapped = np.memmap(handle, dtype=np.float64, mode="r+", shape=(size,))
        if old is not None and not isinstance(old, np.memmap):
            for start in range(0, used, CHUNK_CELLS):
                mapped[start:min(start + CHUNK_CELLS, used)] = old[start:min(start + CHUNK_CELLS, used)]
        return mapped

    def close(self) -> None:
        """Close the files of the memory maps (the maps stay readable: mmap holds its own descriptor)."""
        for handle in self.files.values():
            handle.close()
        self.files.clear()

    def finish(self, row_order: np.ndarray, col_order: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The Fortran-order blocks with rows ``row_order`` and columns ``col_order`` (codes), put in place."""
        blocks = {name: self._ordered(name, row_order, col_order) for name in ("values", "lengths")
                  if name in self.buffers}
        if "values" not in blocks:
            blocks["values"] = np.full((row_order.size, col_order.size), np.nan, order="F")
        return blocks["values"], blocks.get("lengths")

    def _ordered(self, name: str, row_order: np.ndarray, col_order: np.ndarray) -> np.ndarray:
        n_rows, n_cols = row_order.size, col_order.size
        lines = self._lines(name)
        if n_cols < self.cols or not np.array_equal(col_order, np.arange(n_cols)):
            unused = np.setdiff1d(np.arange(self.cols), col_order)
            _permute_lines(lines, np.concatenate([col_order, unused]))
        if n_rows < self.stride or not np.array_equal(row_order, np.arange(n_rows)):
            flat = self.buffers[name]
            step = max(1, CHUNK_CELLS // self.stride)
            for start in range(0, n_cols, step):  # line j moves to j * n_rows, never past its old start
                stop = min(start + step, n_cols)
                flat[start * n_rows:stop * n_rows] = np.take(lines[start:stop], row_order, axis=1).reshape(-1)
            del flat
        del lines
        buffer = self.buffers.pop(name)
        if not isinstance(buffer, np.memmap):
            buffer.resize(n_cols * n_rows, refcheck=False)  # give back the reserved space (no copy)
        return buffer[:n_cols * n_rows].reshape(n_cols, n_rows).T


def _permute_lines(lines: np.ndarray, order: np.ndarray) -> None:
    """``lines[j] = lines[order[j]]`` for every ``j < order.size``, in place, one saved line per cycle."""
    order_list = order.tolist()
    done = [False] * len(order_list)
    for start, source in enumerate(order_list):
        if done[start] or source == start:
            continue
        saved = np.array(lines[start])
        j = start
        while True:
            done[j] = True
            k = order_list[j]
            if k == start:
                lines[j] = saved
                break
            lines[j] = lines[k]
            j = k


def _column_blocks(columns: np.ndarray, width: int) -> Iterator[np.ndarray]:
    for start in range(0, columns.size, width):
        yield columns[start:start + width]


def _take(values: np.ndarray, rows: np.ndarray | None, columns: np.ndarray) -> np.ndarray:
    """``values[rows][:, columns]`` as a float64 array, copying only the cells asked for.

    A contiguous run of columns is a view of the (Fortran-order) block, so only the chosen rows are copied.
    """
    if columns.size and columns[-1] - columns[0] == columns.size - 1:
        part = values[:, columns[0]:columns[-1] + 1]
        return np.asarray(part if rows is None else part[rows], dtype=np.float64)
    return np.asarray(values[:, columns] if rows is None else values[np.ix_(rows, columns)], dtype=np.float64)


# ------------------------------------------------------------------------------------------------------ counts


@dataclass(frozen=True)
class CountModel:
    """What the fit passes learn from a study's counts; arrays over samples cover every column of the block.

    ``rows``: features used (None = all; others have a missing cell). ``columns``: samples with counts.
    ``tmm_factor`` / ``size_factor`` are NaN for samples without counts. ``moments``: per used feature, mean and
    SD of log2 CPM over the z-score reference samples.
    """

    rows: np.ndarray | None
    columns: np.ndarray
    library_size: np.ndarray
    tmm_factor: np.ndarray
    size_factor: np.ndarray
    mean_library_size: float
    moments: normalise.RowMoments
    rounded: bool
    n_features: int

    @property
    def incomplete_features(self) -> int:
        """Features left out because a sample has no value for them."""
        return 0 if self.rows is None else self.n_features - self.rows.size


def _column_sums(part: np.ndarray, transform: Any, *, cells: int = 1 << 20) -> np.ndarray:
    """``transform(part).sum(axis=0)`` of a cell-by-cell numpy ``transform``, ~``cells`` cells of whole columns at
    a time (no block-sized temporary). The same bits: a column's cells are added in the same order and layout
    whatever columns are beside it; chunks are of even size with two columns or more (a one-column array is
    contiguous either way, and numpy could add it pairwise where the block's columns were added one by one).
    """
    n_rows, n_cols = part.shape
    out = np.empty(n_cols)
    chunks = max(1, min(-(-n_rows * n_cols // cells), n_cols // 2))
    bounds = np.linspace(0, n_cols, chunks + 1).round().astype(np.intp)
    for start, stop in itertools.pairwise(bounds):
        out[start:stop] = transform(part[:, start:stop]).sum(axis=0)
    return out


def _has_fractions(part: np.ndarray, *, columns: int = 100) -> bool:
    """Whether a count block holds a non-integer value (NaN and inf do not count), ``columns`` at a time.

    Each chunk is rounded into one buffer reused for the whole block (fresh block-sized temporaries cost more in
    page faults than the test itself); only a chunk where a value differs from its rounding (a fraction, or NaN:
    NaN != NaN) is tested exactly, so a block with missing cells still says False for whole counts.
    """
    rounded = np.empty((part.shape[0], min(columns, part.shape[1])), order="F")
    for start in range(0, part.shape[1], columns):
        sub = part[:, start:start + columns]
        whole = np.rint(sub, out=rounded[:, :sub.shape[1]])
        if (whole != sub).any():
            with np.errstate(invalid="ignore"):  # inf - inf: NaN, and NaN and inf compare False
                if (np.abs(sub - whole) > 0).any():
                    return True
    return False


def fit_counts(block: DenseBlock, *, reference: np.ndarray | None = None, width: int = DEFAULT_WIDTH) -> CountModel:
    """Fit library sizes, edgeR TMM factors, DESeq2 size factors and the log2 CPM z-score reference.

    ``reference`` marks the samples (columns of the block) that define each gene's mean and SD (all by default).
    Runs the block-wise passes described in :mod:`transforms.expression.normalise`, ``width`` sample columns at a time.
    """
    values = block.values
    n_rows, n_cols = values.shape
    everything = np.arange(n_cols)
    missing = np.zeros(n_rows, dtype=bool)
    library_size = np.zeros(n_cols)
    rounded = False
    for cols in _column_blocks(everything, width):
        part = _take(values, None, cols)
        nan = np.isnan(part)
        missing |= nan.any(axis=1)
        library_size[cols] = np.nansum(part, axis=0) if nan.any() else part.sum(axis=0)  # nansum copies
        rounded = rounded or _has_fractions(part)
    rows = np.flatnonzero(~missing) if missing.any() else None
    if rows is not None:
        library_size -= np.nansum(values[missing], axis=0)
    columns = np.flatnonzero(library_size > 0)
    if columns.size == 0:
        raise ValueError("no sample has counts: every library size is zero")

    def blocks(rint: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for cols in _column_blocks(columns, width):
            part = _take(values, rows, cols)
            yield cols, (np.rint(part) if rint and rounded else part)  # whole counts: rint would copy the same

    used_rows = n_rows if rows is None else rows.size
    expressed = np.zeros(used_rows, dtype=bool)
    sqrt_sums = np.zeros(n_cols)
    for cols, part in blocks():
        expressed |= (part > 0).any(axis=1)
        sqrt_sums[cols] = _column_sums(part, np.sqrt)
    tmm = np.full(n_cols, np.nan)
    if columns.size == 1 or not expressed.any():
        tmm[columns] = 1.0
    else:
        f75 = np.zeros(n_cols)
        for cols, part in blocks():
            f75[cols] = normalise.upper_quartiles(part, library_size=library_size[cols], expressed=expressed)
        ref = columns[normalise.tmm_reference(f75[columns], sqrt_sums=sqrt_sums[columns])]
        ref_counts = _take(values, rows, np.array([ref]))[:, 0]
        for cols, part in blocks():
            tmm[cols] = normalise.tmm_factors_against(part, ref_counts, library_size=library_size[cols],
                                               reference_library_size=library_size[ref])
        tmm[columns] = normalise.geometric_mean_scaled(tmm[columns])
    log_geomeans = normalise.fit_log_geomeans(part for _, part in blocks(rint=True))
    size_factor = np.full(n_cols, np.nan)
    for cols, part in blocks(rint=True):
        size_factor[cols] = normalise.size_factors_from_reference(part, log_geomeans)
    mean_library_size = float(np.mean(library_size[columns] * tmm[columns]))
    in_reference = np.ones(n_cols, dtype=bool) if reference is None else np.asarray(reference, dtype=bool)
    if not in_reference[columns].any():
        raise ValueError("no sample with counts is in the z-score reference population")

    def log_blocks() -> Iterator[np.ndarray]:
        for cols, part in blocks():
            keep = in_reference[cols]
            # a Fortran-order part is what part[:, keep] of all its columns would copy (a C-order one is not)
            whole = keep.all() and part.flags.f_contiguous
            yield normalise.log2_cpm(part if whole else part[:, keep],
                                     library_size=library_size[cols][keep], norm_factors=tmm[cols][keep],
                                     mean_library_size=mean_library_size)

    moments = normalise.row_moments(log_blocks())
    return CountModel(rows, columns, library_size, tmm, size_factor, mean_library_size, moments, rounded, n_rows)


def sample_factor_rows(block: DenseBlock, model: CountModel) -> pl.DataFrame:
    """One row per sample of the block: sample_id, library_size, tmm_factor, size_factor (NULL without counts)."""
    return pl.DataFrame({
        "sample_id": block.sample_ids,
        "library_size": model.library_size,
        "tmm_factor": model.tmm_factor,
        "size_factor": model.size_factor,
    }).with_columns(pl.col("tmm_factor", "size_factor").fill_nan(None))


def _long_frames(block: DenseBlock, rows: np.ndarray | None, cols: np.ndarray, columns: dict[str, np.ndarray],
                 *, frame_rows: int, coded: bool) -> Iterator[pl.DataFrame]:
    """Long rows of per-cell arrays shaped used-rows x ``cols``, split into ~``frame_rows`` frames of whole samples.

    Gene-major within a frame (the block's gene order, then sample): each frame is one staged Parquet file, so
    every stored file is sorted by gene_id and a one-gene query reads one short run of it (DuckDB skips row groups
    and vectors by their gene_id bounds; about 10x faster than files in sample order, ``bench/README.md``).

    ``coded``: ``sample_id`` and ``feature_id`` are Enums of the block's ids (row and column numbers, no text
    copied per row; the writer stores them as Parquet dictionaries of plain strings, see
    :meth:`warehouse.lake.Lake.stage_frames`), else strings. NaN cells are NULL. A C-ordered array whose columns
    are all in the frame becomes its float column without a copy.
    """
    for sub, ids in _frame_ids(block, rows, cols, frame_rows=frame_rows, coded=coded):
        yield _long_frame(ids, columns, sub)


def _frame_ids(block: DenseBlock, rows: np.ndarray | None, cols: np.ndarray, *, frame_rows: int, coded: bool
               ) -> Iterator[tuple[slice, dict[str, pl.Series]]]:
    """The frames :func:`_long_frames` splits used-rows x ``cols`` into: each one's slice of ``cols`` and its
    identifier columns (``sample_id``, ``gene_id``, ``feature_id``), which any arrays of that shape share.
    """
    samples, features = ((block.coded_sample_ids, block.coded_feature_ids) if coded
                         else (block.sample_ids, block.feature_ids))
    row_index = np.arange(block.values.shape[0]) if rows is None else rows
    n = row_index.size
    step = max(1, frame_rows // max(n, 1))
    for start in range(0, cols.size, step):
        sub = slice(start, start + step)
        r = np.repeat(row_index, cols[sub].size)
        yield sub, {"sample_id": samples.gather(np.tile(cols[sub], n)),
                    "gene_id": block.gene_ids.gather(r),
                    "feature_id": features.gather(r)}


def _long_frame(ids: dict[str, pl.Series], columns: dict[str, np.ndarray], sub: slice) -> pl.DataFrame:
    """One frame of :func:`_long_frames`: its identifier columns, then the ``sub`` columns of each array."""
    data = dict(ids)
    made: dict[int, pl.Series] = {}  # a column that is another's array (log2_value = log2_cpm) is made once
    for name, array in columns.items():
        if id(array) not in made:
            made[id(array)] = pl.Series(name, array[:, sub].ravel(order="C"), dtype=pl.Float64, nan_to_null=True)
        data[name] = made[id(array)].alias(name)
    return pl.DataFrame(data)


def _frame_width(block: DenseBlock, rows: np.ndarray | None, width: int, frame_rows: int) -> int:
    """Sample columns per transform block: at most ``width``, and about one output frame's worth, so the per-cell
    arrays of a block (seven for rna_normalized) stay a few frames in size whatever the study's width. Every
    transform is per cell or per column with factors fitted beforehand, so the block size changes no value.
    """
    n_rows = block.values.shape[0] if rows is None else rows.size
    return max(1, min(width, frame_rows // max(n_rows, 1)))


def _normalised_count_arrays(block: DenseBlock, model: CountModel, cols: np.ndarray) -> dict[str, np.ndarray]:
    """rna_normalized's per-cell arrays of the used features x samples ``cols`` (see :func:`normalised_count_rows`);
    ``tpm`` only when the block has lengths.
    """
    lib, tmm, sf = model.library_size, model.tmm_factor, model.size_factor
    part = _take(block.values, model.rows, cols)
    # per-cell arithmetic in the frames' (gene-major) layout: the same values, no copy per column for the frame
    cells = np.ascontiguousarray(part)
    log2 = normalise.log2_cpm(cells, library_size=lib[cols], norm_factors=tmm[cols],
                              mean_library_size=model.mean_library_size)
    arrays = {
        "cpm": normalise.cpm(cells, library_size=lib[cols]),
        "log2_cpm": log2,
        "tmm_cpm": normalise.cpm(cells, library_size=lib[cols] * tmm[cols]),
        "mor": cells / sf[cols],
        "log2_value": log2,
        "zscore": normalise.zscore_rows(log2, moments=model.moments),
    }
    if block.lengths is not None:  # per-sample sums: on the block's layout, as before
        arrays["tpm"] = normalise.tpm(part, lengths=_take(block.lengths, model.rows, cols))
    return arrays


def _with_source(frame: pl.DataFrame, source: str, *, coded: bool) -> pl.DataFrame:
    """An rna_normalized frame of counts with its ``source`` and, without lengths, a NULL ``tpm`` (no array of NaN)."""
    missing = [] if "tpm" in frame.columns else [pl.lit(None, pl.Float64).alias("tpm")]
    return frame.with_columns(pl.lit(source, SOURCE if coded else pl.String).alias("source"), *missing)


def normalised_count_rows(block: DenseBlock, model: CountModel, *, width: int = DEFAULT_WIDTH,
                          frame_rows: int = FRAME_ROWS, coded: bool = False) -> Iterator[pl.DataFrame]:
    """rna_normalized rows of counts: one row per used sample and feature, source 'counts'.

    cpm = count / library_size x 1e6; tmm_cpm on library_size x tmm_factor; log2_cpm = edgeR ``cpm(log=TRUE,
    prior.count=2)`` with TMM factors; mor = count / size_factor; log2_value = log2_cpm and zscore its per-gene
    z-score over the reference samples; tpm from the block's lengths (featureCounts Length, Salmon / RSEM
    effective lengths), NULL where no length is known. ``coded``: identifiers and ``source`` as Enums, for the
    writer (:func:`_long_frames`).
    """
    for cols in _column_blocks(model.columns, _frame_width(block, model.rows, width, frame_rows)):
        arrays = _normalised_count_arrays(block, model, cols)
        for frame in _long_frames(block, model.rows, cols, arrays, frame_rows=frame_rows, coded=coded):
            yield _with_source(frame, "counts", coded=coded)


def fit_vst(block: DenseBlock, model: CountModel, *, nsub: int = VST_NSUB, width: int = DEFAULT_WIDTH
            ) -> tuple[normalise.DispersionTrend, str]:
    """DESeq2's blind VST dispersion trend, and how it was fitted.

    As ``vst(dds, blind=TRUE)``: on ``nsub`` genes spread over the base-mean ranks; when fewer than ``nsub``
    genes have a mean normalised count above 5, on every gene, as ``varianceStabilizingTransformation`` does.
    Base means are summed block by block; only the ``nsub`` genes are read across all samples at once.
    """
    n_rows = block.values.shape[0] if model.rows is None else model.rows.size
    normalised_sum = np.zeros(n_rows)
    for cols in _column_blocks(model.columns, width):
        def normalised(part: np.ndarray, _: slice, factors: np.ndarray = model.size_factor[cols]) -> np.ndarray:
            return (np.rint(part) if model.rounded else part) / factors  # whole counts: rint would copy the same

        normalised_sum += normalise.row_sums_by_chunks(_take(block.values, model.rows, cols), normalised)
    base_mean = normalised_sum / model.columns.size
    sf = model.size_factor[model.columns]
    if np.count_nonzero(base_mean > 5) >= nsub:
        genes = normalise.vst_genes(base_mean, nsub=nsub)
        rows = genes if model.rows is None else model.rows[genes]
        counts = np.rint(_take(block.values, rows, model.columns))
        return normalise.fit_vst_trend(counts, size_factors=sf), f"vst(blind=TRUE, nsub={nsub})"
    counts = np.rint(_take(block.values, model.rows, model.columns))
    return normalise.fit_vst_trend(counts, size_factors=sf), "varianceStabilizingTransformation(blind=TRUE)"


def _vst_arrays(block: DenseBlock, model: CountModel, trend: normalise.DispersionTrend,
                cols: np.ndarray) -> dict[str, np.ndarray]:
    """rna_vst's per-cell array of the used features x samples ``cols`` (see :func:`vst_rows`)."""
    part = np.rint(_take(block.values, model.rows, cols))
    return {"vst": normalise.vst_transform(part, size_factors=model.size_factor[cols], trend=trend)}


def vst_rows(block: DenseBlock, model: CountModel, trend: normalise.DispersionTrend, *, width: int = DEFAULT_WIDTH,
             frame_rows: int = FRAME_ROWS, coded: bool = False, into: np.ndarray | None = None
             ) -> Iterator[pl.DataFrame]:
    """rna_vst rows: one row per used sample and feature with DESeq2's blind VST of the (rounded) counts.

    ``coded``: identifiers as Enums, for the writer (:func:`_long_frames`). ``into``: an array of used features x
    used samples (``model.rows`` x ``model.columns``) that receives the values as they are computed (see
    :func:`vst_block`).
    """
    done = 0
    for cols in _column_blocks(model.columns, _frame_width(block, model.rows, width, frame_rows)):
        arrays = _vst_arrays(block, model, trend, cols)
        if into is not None:
            into[:, done:done + cols.size] = arrays["vst"]
            done += cols.size
        yield from _long_frames(block, model.rows, cols, arrays, frame_rows=frame_rows, coded=coded)


def count_rows(block: DenseBlock, model: CountModel, trend: normalise.DispersionTrend | None, *,
               width: int = DEFAULT_WIDTH, frame_rows: int = FRAME_ROWS, coded: bool = False,
               into: np.ndarray | None = None) -> Iterator[tuple[str, pl.DataFrame]]:
    """``("rna_vst", frame)`` and ``("rna_normalized", frame)`` pairs of a count block, one frame of each per block
    of samples: table by table, the frames :func:`vst_rows` (``into`` included) and :func:`normalised_count_rows`
    yield, in their order; without a ``trend``, rna_normalized's alone.

    The two tables' frames of a block of samples hold the same cells, so their identifier columns (two gathers of
    20 M codes and one of gene ids per 1,000 samples x 20,000 features) are made once for both. A block's VST
    frame comes first and rna_normalized's arrays are made after it and let go before the next block, so no more
    per-cell arrays are held at once than when the tables were made one after the other.
    """
    done = 0
    for cols in _column_blocks(model.columns, _frame_width(block, model.rows, width, frame_rows)):
        vst = None if trend is None else _vst_arrays(block, model, trend, cols)
        if into is not None and vst is not None:
            into[:, done:done + cols.size] = vst["vst"]
            done += cols.size
        normalised = None
        for sub, ids in _frame_ids(block, model.rows, cols, frame_rows=frame_rows, coded=coded):
            if vst is not None:
                yield "rna_vst", _long_frame(ids, vst, sub)
            normalised = normalised or _normalised_count_arrays(block, model, cols)
            yield "rna_normalized", _with_source(_long_frame(ids, normalised, sub), "counts", coded=coded)
        vst = normalised = None  # before the next block's arrays are made


def vst_block(block: DenseBlock, model: CountModel, values: np.ndarray) -> DenseBlock:
    """The dense block of the rna_vst rows :func:`vst_rows` wrote from ``block``, its values filled by ``into``:
    what :func:`dense_block` of those rows returns (the used features and samples, in the count block's order,
    which is the canonical one; no lengths), without reading them back.
    """
    rows = model.rows
    return DenseBlock(values,
                      block.feature_ids if rows is None else block.feature_ids.gather(rows),
                      block.gene_ids if rows is None else block.gene_ids.gather(rows),
                      block.sample_ids.gather(model.columns))


# --------------------------------------------------------------------------------------------------- abundance


def _log2_plus_one(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(values >= 0, np.log2(np.maximum(values, 0) + 1), np.nan)


def normalised_abundance_rows(block: DenseBlock, *, measure: str, reference: np.ndarray | None = None,
                              width: int = DEFAULT_WIDTH, frame_rows: int = FRAME_ROWS, coded: bool = False
                              ) -> Iterator[pl.DataFrame]:
    """rna_normalized rows of an abundance-only assay: one row per sample and feature, source 'abundance'.

    log2_value = log2(x + 1) (NULL for missing or negative values), or the value itself for a measure in
    ``LOG_SCALE_MEASURES``; zscore is its per-gene z-score over the ``reference`` samples (all by default),
    ignoring missing values; tpm is the value itself when ``measure`` is 'tpm'; the count-only columns are NULL.
    ``coded``: identifiers and ``source`` as Enums, for the writer (:func:`_long_frames`).
    """
    to_log2 = _log2_plus_one if measure.lower() not in LOG_SCALE_MEASURES else np.asarray
    n_cols = block.values.shape[1]
    columns = np.arange(n_cols)
    in_reference = np.ones(n_cols, dtype=bool) if reference is None else np.asarray(reference, dtype=bool)
    if not in_reference.any():
        raise ValueError("no sample of the assay is in the z-score reference population")
    moments = normalise.row_moments(to_log2(_take(block.values, None, cols))[:, in_reference[cols]]
                              for cols in _column_blocks(columns, width))
    for cols in _column_blocks(columns, width):
        part = _take(block.values, None, cols)
        log2 = to_log2(part)
        arrays = {"log2_value": log2, "zscore": normalise.zscore_rows(log2, moments=moments)}
        if measure.lower() == "tpm":
            arrays["tpm"] = part
        for frame in _long_frames(block, None, cols, arrays, frame_rows=frame_rows, coded=coded):
            nulls = [pl.lit(None, pl.Float64).alias(c) for c in (*COUNT_ONLY, "tpm") if c not in frame.columns]
            yield frame.with_columns(pl.lit("abundance", SOURCE if coded else pl.String).alias("source"), *nulls)


# ------------------------------------------------------------------------------------------- sample attributes


def sample_table(sample_ids: pl.Series, attributes: pl.DataFrame, *, columns: Sequence[str]) -> pl.DataFrame:
    """One row per sample (in ``sample_ids`` order) with the wanted ``columns`` of the long sample_attributes.

    An attribute no sample has is absent from the result (so :func:`check_design` names it); a sample without a
    value gets NULL.
    """
    wanted = attributes.filter(pl.col("attribute").is_in(list(columns)))
    frame = pl.DataFrame({"sample_id": sample_ids})
    if wanted.height == 0:
        return frame
    wide = wanted.pivot(on="attribute", index="sample_id", values="value", aggregate_function="first")
    return frame.join(wide, on="sample_id", how="left", maintain_order="left")


def reference_mask(sample_ids: pl.Series, attributes: pl.DataFrame, *, attribute: str,
                   values: Sequence[str]) -> np.ndarray:
    """Which samples form a z-score reference population: ``attribute`` is one of ``values``."""
    table = sample_table(sample_ids, attributes, columns=[attribute])
    if attribute not in table.columns:
        raise ValueError(f"zscore_reference attribute {attribute!r} is not a sample attribute of the study")
    return table[attribute].is_in(list(values)).fill_null(False).to_numpy()


def contrast_samples(sample_ids: pl.Series, attributes: pl.DataFrame, *, where: dict[str, list[str]]) -> np.ndarray:
    """Which samples a contrast uses: those holding one of the listed values of every ``filter`` attribute.

    Raises :class:`DesignError` naming an attribute no sample has (a typo would otherwise select nothing).
    """
    keep = np.ones(sample_ids.len(), dtype=bool)
    if not where:
        return keep
    table = sample_table(sample_ids, attributes, columns=list(where))
    for attribute, values in where.items():
        if attribute not in table.columns:
            raise DesignError(f"filter attribute {attribute!r} is not a sample attribute of the study")
        keep &= table[attribute].is_in(values).fill_null(False).to_numpy()
    return keep


def differential_rows(block: DenseBlock, *, samples: pl.DataFrame, factor: str, test: str, reference: str,
                      covariates: Sequence[str] = (), numeric: Sequence[str] = (),
                      keep: np.ndarray | None = None) -> DEResult:
    """DESeq2 Wald test of ``test`` vs ``reference`` on the block's complete features and samples with counts.

    ``samples`` holds one row per column of the block (``sample_table``); ``differential_expression`` checks the
    design before any fitting. ``keep``: the columns the contrast uses (its ``filter``; all when None), as DESeq2
    on the subset ``dds[, keep]``. The result table has one row per feature with ``gene_id`` added.
    """
    values = block.values
    chosen = np.ones(values.shape[1], dtype=bool) if keep is None else keep
    missing = np.zeros(values.shape[0], dtype=bool)
    for cols in _column_blocks(np.flatnonzero(chosen), DEFAULT_WIDTH):
        missing |= np.isnan(_take(values, None, cols)).any(axis=1)
    rows = np.flatnonzero(~missing)
    has_counts = np.zeros(values.shape[1], dtype=bool)
    for cols in _column_blocks(np.flatnonzero(chosen), DEFAULT_WIDTH):
        has_counts[cols] = _take(values, rows, cols).sum(axis=0) > 0
    columns = np.flatnonzero(has_counts & chosen)
    check_design(samples[columns], factor=factor, test=test, reference=reference, covariates=covariates,
                 numeric=numeric)
    # taken once, already in the order the fit uses (reordering inside would copy the genes x samples block again)
    columns = columns[canonical_sample_order(samples[columns], factor=factor, test=test, reference=reference)]
    used = samples[columns]
    counts = np.asarray(values[np.ix_(rows, columns)], dtype=np.float64, order="F")  # as the fit had it before
    result = differential_expression(counts, genes=block.feature_ids.gather(rows).to_list(),
                                     samples=used, factor=factor, test=test, reference=reference,
                                     covariates=covariates, numeric=numeric)
    table = result.table.with_columns(block.gene_ids.gather(rows).alias("gene_id"))
    parameters = {**result.parameters, "incomplete_features": int(missing.sum()),
                  "samples_without_counts": int(chosen.sum() - columns.size)}
    return DEResult(table, parameters)


# ------------------------------------------------------------------------------------------------ study stages


@dataclass
class StageOutput:
    """What a study stage produces: ``(table, frame)`` pairs for the commit path, consumed once, and the
    metadata per table (filled while the frames are consumed). ``contrasts`` keeps each DE result for plots.
    """

    frames: Iterator[tuple[str, pl.DataFrame]]
    metadata: dict[str, dict[str, object]]
    contrasts: list[tuple[str, DEResult]]
    blocks: dict[str, DenseBlock] = field(default_factory=dict)
    """Dense blocks of what the frames hold, by assay, filled once an assay's frames are all consumed (the VST block
    of :func:`normalise_study` with ``keep_vst``), for :func:`keep_shared_block` after the commit."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Contrasts of :func:`differential_study` not fitted (name as in ``contrasts``, the sentence saying why), filled
    by the design checks and, for a design broken by samples without counts, while the frames are consumed."""


NORMALISED_TABLES = ("rna_sample_factors", "rna_normalized", "rna_vst")
DE_TABLE = "differential_expression"
PADJ = 0.05
"""Significance shown in DE metadata and plots."""


def _span(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    return f"{values.min():.6g} .. {values.max():.6g}" if values.size else "none"


def distinct_rows(frame: pl.LazyFrame, *columns: str) -> list[tuple[Any, ...]]:
    """The distinct values of ``columns`` over the rows of ``frame`` (``frame.select(columns).unique()``), sorted.

    Asked one row at a time, each query leaving out the values already found, so a partition column (``assay``)
    is answered from the files' paths: polars skips the files of a value left out, and the last query reads no file
    (2 ms against 0.3 s for ``unique`` over the 20 M hive values of a 20,000 x 1,000 study). A column not in the
    paths costs a scan of the rows left at the end, as ``unique`` did.
    """
    found: list[tuple[Any, ...]] = []
    while True:
        rest = frame if not found else frame.filter(~pl.any_horizontal(
            pl.all_horizontal(pl.col(c).eq_missing(pl.lit(v)) for c, v in zip(columns, row, strict=True))
            for row in found))
        head = rest.select(*columns).head(1).collect()
        if head.is_empty():
            return sorted(found, key=lambda row: tuple((value is None, value) for value in row))  # NULL last
        if head.row(0) in found:  # the filter must leave every found value out
            raise RuntimeError(f"distinct_rows found {head.row(0)} twice")
        found.append(head.row(0))


def _assays(frame: pl.LazyFrame, *columns: str) -> list[tuple[str, ...]]:
    return distinct_rows(frame, *columns)


def normalise_study(counts: pl.LazyFrame, abundance: pl.LazyFrame, attributes: pl.DataFrame, *,
                    zscore_reference: ZscoreReference | None, workdir: str | Path,
                    counts_key: tuple[Hashable, ...] | None = None, keep_vst: bool = False) -> StageOutput:
    """Sample factors, normalised expression and VST of every count assay, and log2 / z-scores of every abundance
    assay of one study (``rna_counts`` / ``rna_abundance`` / ``sample_attributes`` rows of the study).

    Each assay is read once into a dense block in ``workdir`` (a count assay's taken instead from sample QC when it
    kept it, below); abundance z-score assays are skipped (already z-scores). Raises ValueError when a count assay
    has no sample with counts or the z-score reference is empty.
    The long frames are for the writer: their identifiers and ``source`` are Enums (``coded``, :func:`_long_frames`).
    ``counts_key`` names the ``counts`` rows (:func:`shared_dense_block`; the assay is added): a count block kept
    under it by sample QC in this process is taken instead of read again.
    ``keep_vst``: the VST values of the first count assay whose block fits ``SHARED_BLOCK_BYTES`` are also kept as
    a dense block (``StageOutput.blocks``, :func:`vst_block`), for the structure stage of this process once the
    rows are committed (its rna_vst version names them); a larger study's structure stage reads its rows back.
    """
    metadata: dict[str, dict[str, object]] = {t: {} for t in NORMALISED_TABLES}
    blocks: dict[str, DenseBlock] = {}
    factors, normalised, vst = (metadata[t] for t in NORMALISED_TABLES)
    normalised |= {
        "zscore_method": "per gene (log2_cpm for counts, log2(x+1) for abundances - mean) / SD, ddof=1",
        "zscore_reference": ("all samples of the assay" if zscore_reference is None
                             else f"samples with {zscore_reference.attribute} in {zscore_reference.values}")}

    def mask(block: DenseBlock) -> np.ndarray | None:
        if zscore_reference is None:
            return None
        return reference_mask(block.sample_ids, attributes, attribute=zscore_reference.attribute,
                              values=zscore_reference.values)

    count_assays = [a for (a,) in _assays(counts, "assay")]
    abundance_assays = _assays(abundance, "assay", "measure")
    skipped = sorted({a for a, m in abundance_assays if m.lower() == "zscore"})

    def frames() -> Iterator[tuple[str, pl.DataFrame]]:
        for assay in count_assays:
            label = pl.lit(assay).alias("assay")
            block = shared_dense_block(counts.filter(pl.col("assay") == assay), value="count", workdir=workdir,
                                       key=None if counts_key is None else (*counts_key, assay), keep=False)
            in_reference = mask(block)
            model = fit_counts(block, reference=in_reference)
            yield "rna_sample_factors", sample_factor_rows(block, model).with_columns(label)
            trend: normalise.DispersionTrend | None = None
            try:
                trend, method = fit_vst(block, model)
            except ValueError as exc:  # DESeq2 would fall back to a local trend, which is not implemented here
                vst[f"{assay}.not_computed"] = str(exc)
            shape = (block.values.shape[0] if model.rows is None else model.rows.size, model.columns.size)
            into = (np.empty(shape, order="F") if trend is not None and keep_vst and not blocks
                    and 8 * shape[0] * shape[1] <= SHARED_BLOCK_BYTES else None)
            # rna_vst and rna_normalized frames of each block of samples together: their identifiers made once
            for table, frame in count_rows(block, model, trend, coded=True, into=into):
                yield table, frame.with_columns(label)
            if into is not None:
                blocks[assay] = vst_block(block, model, into)
            if trend is not None:
                vst.update({f"{assay}.method": method, f"{assay}.asympt_disp": trend.asympt_disp,
                            f"{assay}.extra_pois": trend.extra_pois})
            used = model.columns
            factors.update({
                f"{assay}.samples": int(used.size), f"{assay}.library_size": _span(model.library_size[used]),
                f"{assay}.tmm_factor": _span(model.tmm_factor), f"{assay}.size_factor": _span(model.size_factor),
                f"{assay}.samples_without_counts": int(block.sample_ids.len() - used.size),
                f"{assay}.incomplete_features": model.incomplete_features,
                f"{assay}.counts_rounded_for_deseq2": model.rounded})
            if in_reference is not None:
                normalised[f"{assay}.reference_samples"] = int(in_reference[used].sum())
        for assay, measure in abundance_assays:
            if assay in skipped:
                continue
            rows = abundance.filter(pl.col("assay") == assay, pl.col("measure") == measure)
            block = dense_block(rows, value="value", workdir=workdir)
            in_reference = mask(block)
            for frame in normalised_abundance_rows(block, measure=measure, reference=in_reference, coded=True):
                yield "rna_normalized", frame.with_columns(pl.lit(assay).alias("assay"))
            normalised[f"{assay}.measure"] = measure
            normalised[f"{assay}.log2_value"] = ("value as given" if measure.lower() in LOG_SCALE_MEASURES
                                                 else "log2(value + 1)")
            if in_reference is not None:
                normalised[f"{assay}.reference_samples"] = int(in_reference.sum())

    normalised |= {"count_assays": ", ".join(count_assays) or "none",
                   "abundance_assays": ", ".join(a for a, _ in abundance_assays if a not in skipped) or "none",
                   "skipped_zscore_assays": ", ".join(skipped) or "none"}
    if not count_assays:
        factors["note"] = vst["note"] = "the study has no rna_counts rows: an empty partition is committed"
        if not abundance_assays:
            normalised["note"] = "the study has no rna_counts or rna_abundance rows: an empty partition is committed"
    return StageOutput(frames(), metadata, [], blocks)


def differential_study(counts: pl.LazyFrame, attributes: pl.DataFrame, *, contrasts: Sequence[Contrast],
                       workdir: str | Path) -> StageOutput:
    """DESeq2 Wald tests of every contrast on every count assay of one study.

    Every design is checked (:func:`check_design`, milliseconds) before any block is built or model fitted. A
    contrast whose design the samples cannot support (a level without samples, no residual degrees of freedom, a
    confounded or missing covariate) is skipped, not fitted: ``StageOutput.skipped`` and the metadata's
    ``skipped_contrasts`` name it and say why, and the other contrasts are computed and committed (one bad contrast
    does not withhold the study). A study without counts skips every contrast, and says so. Counts that are no
    counts (negative, non-finite) still raise ValueError: that is the data, not the contrast.
    """
    assays = [a for (a,) in _assays(counts, "assay")]
    metadata: dict[str, object] = {"padj_threshold": PADJ}
    output = StageOutput(iter(()), {DE_TABLE: metadata}, [])
    if not assays or not contrasts:
        why = "no contrasts in the manifest" if assays else "the study has no rna_counts rows"
        metadata["note"] = f"{why}: an empty partition is committed"
        if contrasts:  # a study without counts: each contrast is skipped, said as such (it was silently ignored)
            output.skipped.update({c.name: f"contrast {c.name!r} skipped: differential expression needs RNA counts "
                                           "and the study has no rna_counts rows" for c in contrasts})
            metadata["skipped_contrasts"] = dict(output.skipped)
        return output

    def skip(contrast: Contrast, assay: str, exc: DesignError) -> None:
        name = contrast.name if len(assays) == 1 else f"{contrast.name}_{assay}"
        output.skipped[name] = f"contrast {contrast.name!r} on assay {assay!r} skipped: {exc}"
        metadata["skipped_contrasts"] = dict(output.skipped)

    sample_ids = counts.select("assay", "sample_id").unique(maintain_order=True).collect()
    fitted: list[tuple[str, Contrast]] = []
    for assay in assays:
        ids = sample_ids.filter(pl.col("assay") == assay)["sample_id"]
        for contrast in contrasts:
            try:
                chosen = ids.filter(contrast_samples(ids, attributes, where=contrast.filter))
                design = sample_table(chosen, attributes, columns=[contrast.factor, *contrast.covariates])
                check_design(design, factor=contrast.factor, test=contrast.test, reference=contrast.reference,
                             covariates=contrast.covariates, numeric=contrast.numeric_covariates)
            except DesignError as exc:
                skip(contrast, assay, exc)
                continue
            fitted.append((assay, contrast))

    def frames() -> Iterator[tuple[str, pl.DataFrame]]:
        for assay in dict.fromkeys(a for a, _ in fitted):
            block = dense_block(counts.filter(pl.col("assay") == assay), value="count", workdir=workdir)
            for contrast in (c for a, c in fitted if a == assay):
                design = sample_table(block.sample_ids, attributes, columns=[contrast.factor, *contrast.covariates])
                keep = contrast_samples(block.sample_ids, attributes, where=contrast.filter)
                try:  # samples without counts are left out, which can still break a design checked above
                    result = differential_rows(block, samples=design, factor=contrast.factor, test=contrast.test,
                                               reference=contrast.reference, covariates=contrast.covariates,
                                               numeric=contrast.numeric_covariates,
                                               keep=keep if contrast.filter else None)
                except DesignError as exc:
                    skip(contrast, assay, exc)
                    continue
                except ValueError as exc:
                    raise ValueError(f"contrast {contrast.name!r} on assay {assay!r}: {exc}") from exc
                name = contrast.name if len(assays) == 1 else f"{contrast.name}_{assay}"
                metadata[f"{name}.de_genes_padj_lt_{PADJ}"] = int(result.table.filter(pl.col("padj") < PADJ).height)
                metadata[f"{name}.parameters"] = result.parameters
                output.contrasts.append((name, result))
                yield DE_TABLE, result.table.with_columns(pl.lit(contrast.name).alias("contrast"),
                                                          pl.lit(assay).alias("assay"))

    output.frames = frames()
    return output
