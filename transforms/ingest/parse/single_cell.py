"""Single-cell count matrices (AnnData h5ad, 10x Matrix Market folder, 10x HDF5) summed to pseudobulk profiles.

A file is opened as a :class:`CellMatrix`: its cell barcodes, its features and a generator of sparse blocks read
a bounded number of non-zeros at a time (h5py slices of the CSR / CSC arrays, or lines of the Matrix Market text),
so a million-cell file is never in memory at once. :func:`pseudobulk` adds each stored value of a block to its
cell's group row of a dense groups x features sum (one pass, as coordinates): the sums of
``scanpy.get.aggregate(func="sum")`` (an indicator matrix product), without loading the cells. Values are checked to
be whole, non-negative counts block by block, so a log-normalised matrix fails at its first block with a message
naming the file and the layers it holds.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import scipy.sparse as sp

from schemas.manifest import not_a_file
from transforms.ingest.parse.text import READ_ERRORS, open_text, unreadable
from transforms.issues import InputError, Issue

BLOCK_NONZEROS = 1 << 24
"""Non-zeros read per block (16 M: about 200 MB of values and indices with their product), whatever the file size."""
MTX_BLOCK_BYTES = 1 << 26
"""Bytes of Matrix Market text parsed per block."""
GENE_EXPRESSION = "Gene Expression"
"""10x feature type kept: antibody capture, CRISPR guide and custom features are not genes."""

Block = tuple[slice, slice, sp.spmatrix | np.ndarray]
"""(cells, features, values): a cells x features piece of the matrix at those positions."""


@dataclass
class CellMatrix:
    """A cells x features count matrix on disk: barcodes, features, block reader and the file's cell table.

    ``features``: ``feature_id`` (as the file gives it), ``feature_type`` (null when the file has none).
    ``obs``: h5ad cell annotations by column name (read on demand), else None. ``element``: where the values are
    (``X``, ``layers/counts``, ``matrix.mtx``) for messages; ``layers``: the h5ad file's layer names.
    """

    file: str
    barcodes: np.ndarray
    features: pl.DataFrame
    blocks: Callable[[], Iterator[Block]]
    element: str
    obs: Callable[[str], np.ndarray] | None = None
    obs_columns: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    ids_at: dict[str, str] = field(default_factory=dict)
    """Where the ``barcodes`` and ``features`` ids are: an HDF5 path in ``file`` (``obs/_index``,
    ``matrix/barcodes``) or, for a 10x folder, the study-relative path of the text file (row i on line i + 1)."""
    text_ids: bool = False
    """True for a 10x folder: ``ids_at`` names text files, and a repeated id is located by line."""

    @property
    def n_cells(self) -> int:
        return int(self.barcodes.shape[0])


@dataclass(frozen=True)
class RepeatedIds:
    """Ids of a matrix's cells or features given more than once: the rows (0-based) of every repeat after the
    first, and the first repeated id with its first row and its repeat's row, for a message.
    """

    later_rows: np.ndarray
    distinct: int
    first_id: str
    first_row: int
    repeat_row: int

    def location(self, matrix: CellMatrix, kind: str, rows: np.ndarray | None = None) -> tuple[str, int | None, str]:
        """(issue file, issue line, message start) of the first repeat of ``kind`` (barcodes / features).

        ``rows``: the file row of each id checked, when they were a subset of the file's (the gene features).
        """
        noun = "barcode" if kind == "barcodes" else "feature id"
        first, repeat = ((self.first_row, self.repeat_row) if rows is None
                         else (int(rows[self.first_row]), int(rows[self.repeat_row])))
        what = f"{self.distinct} {noun}(s) repeat"
        if matrix.text_ids:
            return (matrix.ids_at[kind], repeat + 1,
                    f"{noun} {self.first_id!r} of line {first + 1} repeats on line {repeat + 1} ({what})")
        return (matrix.file, None, f"{matrix.ids_at[kind]}: {noun} {self.first_id!r} of row {first + 1} "
                                   f"repeats on row {repeat + 1} ({what})")


def repeated_ids(ids: np.ndarray | pl.Series) -> RepeatedIds | None:
    """The repeats among ``ids`` (None when every id is unique); the first occurrence is not a repeat."""
    series = ids if isinstance(ids, pl.Series) else pl.Series(ids.tolist(), dtype=pl.String)
    later = series.is_duplicated() & ~series.is_first_distinct()
    if not later.any():
        return None
    rows = np.flatnonzero(later.to_numpy())
    first_id = series[int(rows[0])]  # None for blank ids (a blank line of barcodes.tsv)
    first_row = int(np.flatnonzero(series.eq_missing(first_id).to_numpy())[0])
    return RepeatedIds(rows, int(series.filter(later).n_unique()), "" if first_id is None else str(first_id),
                       first_row, int(rows[0]))


def _strings(values: np.ndarray) -> np.ndarray:
    """HDF5 byte strings (or numbers) as a numpy array of Python str."""
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()], dtype=object)


def _malformed(file: str, element: str, reason: str) -> InputError:
    return InputError(Issue(file, "malformed_matrix", "error", f"{element}: {reason}; the matrix is not read"))


def _sparse_pointers(group: h5py.Group, *, outer: int, file: str, element: str, unit: str = "cells") -> np.ndarray:
    """``indptr`` of a compressed sparse group, checked against its ``outer`` size (``unit``: cells or features)
    before any value is read.

    A pointer array of the wrong length, not starting at 0, decreasing or not ending at the number of stored values
    would make scipy read (or write) outside the arrays: a crash or silently wrong sums. Raises
    :class:`InputError` (``malformed_matrix``) naming the element.
    """
    for member in ("data", "indices", "indptr"):
        if not isinstance(group.get(member), h5py.Dataset):
            raise _malformed(file, element, f"no {member!r} array (a compressed sparse matrix has data, indices "
                                            "and indptr)")
    data, indices = group["data"], group["indices"]
    if data.dtype.kind not in "iuf" or not np.issubdtype(indices.dtype, np.integer):
        raise _malformed(file, element, f"data is {data.dtype} and indices {indices.dtype}; expected real numbers and "
                                        "integers")
    indptr = group["indptr"][...]
    if indptr.ndim != 1 or not np.issubdtype(indptr.dtype, np.integer):
        raise _malformed(file, element, f"indptr is a {indptr.dtype} array of shape {indptr.shape}; expected "
                                        f"one integer per {unit[:-1]} plus one")
    indptr = indptr.astype(np.int64)
    if indptr.shape[0] != outer + 1:
        raise _malformed(file, element, f"indptr has {indptr.shape[0]} entries for {outer} {unit} (expected "
                                        f"{outer + 1}); the matrix size and its pointers disagree")
    if indptr[0] != 0 or (indptr.size > 1 and bool((np.diff(indptr) < 0).any())):
        raise _malformed(file, element, "indptr does not start at 0 and never decrease")
    if not int(indptr[-1]) == data.shape[0] == indices.shape[0]:
        raise _malformed(file, element, f"indptr ends at {int(indptr[-1])} but data has {data.shape[0]} and "
                                        f"indices {indices.shape[0]} values")
    return indptr


def _compressed_blocks(group: h5py.Group, *, by_cells: bool, n_cells: int, n_features: int, file: str,
                       element: str) -> Iterator[Block]:
    """Blocks of a compressed sparse group (``data``, ``indices``, ``indptr``) of at most BLOCK_NONZEROS each.

    ``by_cells``: indptr runs over cells (h5ad CSR, 10x HDF5), else over features (h5ad CSC). The pointers are
    checked first and each block's indices against the inner size (:func:`_sparse_pointers`): ``file`` and
    ``element`` name the matrix in that error.
    """
    outer = n_cells if by_cells else n_features
    inner = n_features if by_cells else n_cells
    indptr = _sparse_pointers(group, outer=outer, file=file, element=element,
                              unit="cells" if by_cells else "features")
    start = 0
    while start < outer:
        stop = int(np.searchsorted(indptr, indptr[start] + BLOCK_NONZEROS, side="right")) - 1
        stop = min(max(stop, start + 1), outer)
        lo, hi = int(indptr[start]), int(indptr[stop])
        pointers = indptr[start:stop + 1] - lo
        data, indices = group["data"][lo:hi], group["indices"][lo:hi]
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= inner):
            bad = int(indices.min()) if int(indices.min()) < 0 else int(indices.max())
            raise _malformed(file, element, f"index {bad} lies outside the {inner} "
                                            f"{'features' if by_cells else 'cells'} of the matrix")
        if by_cells:
            yield slice(start, stop), slice(0, n_features), sp.csr_matrix(
                (data, indices, pointers), shape=(stop - start, n_features))
        else:
            yield slice(0, n_cells), slice(start, stop), sp.csc_matrix(
                (data, indices, pointers), shape=(n_cells, stop - start))
        start = stop


def _dense_blocks(dataset: h5py.Dataset) -> Iterator[Block]:
    n_cells, n_features = dataset.shape
    step = max(1, BLOCK_NONZEROS // max(n_features, 1))
    for start in range(0, n_cells, step):
        stop = min(start + step, n_cells)
        yield slice(start, stop), slice(0, n_features), dataset[start:stop]


# ---------------------------------------------------------------------------------------------------- h5ad
def _read_elem(node: h5py.Group | h5py.Dataset, *, file: str, length: int | None = None) -> np.ndarray:
    """One obs / var column or index through anndata's element reader (categorical, string, nullable arrays).

    ``length``: the number of values it must hold (cells for an obs column). A column anndata cannot decode
    (a categorical code past its categories, a missing part) or of another length is a ``malformed_matrix``
    error naming the file and the column's HDF5 path.
    """
    from anndata.io import read_elem

    element = node.name.lstrip("/")
    try:
        value = read_elem(node)
        if hasattr(value, "to_numpy"):  # pandas Categorical / nullable arrays
            value = np.asarray(value.to_numpy(dtype=object, na_value=None) if hasattr(value, "categories")
                               else value.to_numpy(dtype=object))
        value = np.asarray(value, dtype=object)
    except (ValueError, KeyError, TypeError, IndexError, OSError, NotImplementedError) as exc:
        raise _malformed(file, element, f"anndata cannot read it ({exc})") from exc
    if value.ndim != 1:
        raise _malformed(file, element, f"an array of shape {value.shape}; expected one value per row")
    if length is not None and value.shape[0] != length:
        raise _malformed(file, element, f"has {value.shape[0]} values for {length} cells")
    return value


def _dataframe_index(group: h5py.Group, *, file: str) -> np.ndarray:
    """The row names (``_index`` attribute) of an encoded data frame group (obs or var)."""
    name = str(group.attrs["_index"])
    node = group.get(name)
    if not isinstance(node, h5py.Group | h5py.Dataset):
        raise _malformed(file, f"{group.name.lstrip('/')}/{name}", "missing: the data frame's index (its cell "
                                                                   "or feature names) is not in the file")
    return _read_elem(node, file=file)


def _h5ad_frames(handle: h5py.File, *, file: str) -> tuple[h5py.Group, h5py.Group]:
    """The ``obs`` and ``var`` groups of an AnnData file, checked to be encoded data frames."""
    frames = []
    for name in ("obs", "var"):
        group = handle.get(name)
        if isinstance(group, h5py.Dataset):  # anndata < 0.7 wrote obs / var as compound datasets
            raise InputError(Issue(file, "unsupported_h5ad", "error", f"not an AnnData >= 0.7 file ({name} is not "
                                   "an encoded data frame); rewrite it with a current anndata: "
                                   "anndata.read_h5ad(path).write_h5ad(path)"))
        if not isinstance(group, h5py.Group):
            raise _malformed(file, name, "missing: an AnnData file has obs (cells) and var (features) data frames")
        if "_index" not in group.attrs:
            raise _malformed(file, name, "not an encoded data frame (no _index attribute naming its row names); "
                                         "rewrite it with a current anndata: anndata.read_h5ad(path)"
                                         ".write_h5ad(path)")
        frames.append(group)
    return frames[0], frames[1]


def _check_sparse_shape(shape: object, *, cells: int, features: int, file: str, element: str) -> None:
    """A sparse matrix's ``shape`` attribute must be (obs length, var length): one of the three is wrong, and
    anndata refuses such a file, so it is a ``malformed_matrix`` error naming both sizes.
    """
    said = np.asarray(shape)
    if said.shape != (2,) or not np.issubdtype(said.dtype, np.integer):
        raise _malformed(file, element, f"its shape attribute {said.tolist()!r} is not (cells, features)")
    if (int(said[0]), int(said[1])) != (cells, features):
        raise _malformed(file, element, f"its shape attribute says {int(said[0])} cells x {int(said[1])} features, "
                                        f"but the file has {cells} cells (obs) x {features} features (var)")


def open_h5ad(path: Path, *, file: str, layer: str | None) -> CellMatrix:
    """An AnnData file's ``X`` (or ``layers/<layer>``), read in blocks; obs columns read on demand.

    AnnData >= 0.7 encodings (``encoding-type`` attributes); an older file (obs as a compound dataset) is an error
    saying how to rewrite it. Raises :class:`InputError` for a missing layer, naming the layers the file has.
    """
    with h5py.File(path, "r") as handle:
        obs, var = _h5ad_frames(handle, file=file)
        layers = sorted(handle["layers"].keys()) if isinstance(handle.get("layers"), h5py.Group) else []
        element = "X" if layer in (None, "X") else f"layers/{layer}"
        if element not in handle:
            what = "'X' is not in the file" if element == "X" else f"layer {layer!r} ({element}) is not in the file"
            raise InputError(Issue(file, "unknown_layer", "error", f"{what}; its layers: {layers or 'none'} (X is "
                                   "used when `layer` is not set)", column="layer"))
        barcodes, features = _dataframe_index(obs, file=file), _dataframe_index(var, file=file)
        # column-order lists the columns; one listed but absent (a half-written file) is not a column
        obs_columns = [str(c) for c in obs.attrs.get("column-order", []) if str(c) in obs]
        node = handle[element]
        sparse_kind = str(node.attrs.get("encoding-type", "")) if isinstance(node, h5py.Group) else "dense"
        if isinstance(node, h5py.Group) and "shape" in node.attrs:  # anndata builds the matrix at this size
            _check_sparse_shape(node.attrs["shape"], cells=len(barcodes), features=len(features), file=file,
                                element=element)
        if isinstance(node, h5py.Dataset):
            shape, dtype = node.shape, node.dtype
            if shape != (len(barcodes), len(features)) or dtype.kind not in "iuf":
                raise _malformed(file, element, f"a dense {dtype} array of shape {shape}; expected real numbers, "
                                                f"{len(barcodes)} cells (obs) x {len(features)} features (var)")
    if sparse_kind not in ("csr_matrix", "csc_matrix", "dense"):
        raise InputError(Issue(file, "unsupported_h5ad", "error", f"{element} is stored as {sparse_kind!r}; "
                               "expected a CSR / CSC sparse matrix or a dense array"))

    def blocks() -> Iterator[Block]:
        with h5py.File(path, "r") as h5:
            item = h5[element]
            if isinstance(item, h5py.Dataset):
                yield from _dense_blocks(item)
            else:
                yield from _compressed_blocks(item, by_cells=sparse_kind == "csr_matrix", n_cells=len(barcodes),
                                              n_features=len(features), file=file, element=element)

    def column(name: str) -> np.ndarray:
        with h5py.File(path, "r") as h5:
            return _read_elem(h5["obs"][name], file=file, length=len(barcodes))

    frame = pl.DataFrame({"feature_id": pl.Series(features.tolist(), dtype=pl.String),
                          "feature_type": pl.Series([None] * len(features), dtype=pl.String)})
    return CellMatrix(file, barcodes, frame, blocks, element, column, obs_columns, layers,
                      ids_at={"barcodes": "obs/_index", "features": "var/_index"})


# ------------------------------------------------------------------------------------------------- 10x HDF5
def open_10x_h5(path: Path, *, file: str) -> CellMatrix:
    """Cell Ranger's HDF5 matrix: v3 (``matrix`` with ``features/``) or v2 (one genome group with ``genes``)."""
    with h5py.File(path, "r") as handle:
        groups = [k for k in handle if isinstance(handle[k], h5py.Group)]
        if isinstance(handle.get("matrix"), h5py.Group):
            name = "matrix"
        elif len(groups) == 1 and "genes" in handle[groups[0]]:
            name = groups[0]
        else:
            raise InputError(Issue(file, "unsupported_10x_h5", "error", "expected a Cell Ranger matrix file: a "
                                   f"'matrix' group (v3) or one genome group (v2); found {groups}"))
        group = handle[name]
        id_path = "genes" if "genes" in group and "features" not in group else "features/id"  # v2, v3
        for member in ("shape", "barcodes", id_path):
            if not isinstance(group.get(member), h5py.Dataset):
                raise _malformed(file, name, f"no {member!r} dataset (a Cell Ranger matrix has shape, barcodes "
                                             "and features)")
        shape = group["shape"][...]
        if shape.shape != (2,) or not np.issubdtype(shape.dtype, np.integer) or bool((shape < 0).any()):
            raise _malformed(file, f"{name}/shape", f"{shape.tolist()!r} is not (features, cells)")
        n_features, n_cells = (int(n) for n in shape)
        barcodes = _strings(group["barcodes"][...])
        ids = _strings(group[id_path][...])
        types = (_strings(group["features/feature_type"][...])
                 if id_path == "features/id" and "feature_type" in group["features"] else None)
        for what, found, expected in (("barcodes", len(barcodes), n_cells), (id_path, len(ids), n_features),
                                      ("feature types", 0 if types is None else len(types),
                                       0 if types is None else n_features)):
            if found != expected:
                raise _malformed(file, f"{name}/shape", f"says {n_features} features x {n_cells} cells, but "
                                                        f"{what} has {found} entries")
        _sparse_pointers(group, outer=n_cells, file=file, element=name)  # now: a broken file fails before annotation
    features = pl.DataFrame({"feature_id": ids.tolist(),
                             "feature_type": types.tolist() if types is not None else [None] * len(ids)},
                            schema={"feature_id": pl.String, "feature_type": pl.String})

    def blocks() -> Iterator[Block]:
        with h5py.File(path, "r") as h5:
            yield from _compressed_blocks(h5[name], by_cells=True, n_cells=n_cells, n_features=n_features,
                                          file=file, element=name)

    return CellMatrix(file, barcodes, features, blocks, f"{name}/data",
                      ids_at={"barcodes": f"{name}/barcodes", "features": f"{name}/{id_path}"})


# ------------------------------------------------------------------------------------------ 10x Matrix Market
MTX_FILES = {"matrix": ("matrix.mtx", "matrix.mtx.gz"), "features": ("features.tsv", "features.tsv.gz",
                                                                     "genes.tsv", "genes.tsv.gz"),
             "barcodes": ("barcodes.tsv", "barcodes.tsv.gz")}
"""What a 10x ``filtered_feature_bc_matrix`` folder holds (Cell Ranger >= 3 gzips them; 1.x / 2.x: genes.tsv)."""


def mtx_files(folder: Path, *, file: str) -> dict[str, Path]:
    """The matrix, features and barcodes files of a 10x folder; InputError naming what is missing."""
    found, missing = {}, []
    for role, names in MTX_FILES.items():
        odd = [(n, reason) for n in names if (reason := not_a_file(folder / n))]
        if odd:  # a directory or a FIFO in its place: said as what it is (a FIFO would block a read for ever)
            raise InputError(Issue(f"{file}/{odd[0][0]}", "unreadable_file", "error", odd[0][1]))
        present = [folder / n for n in names if (folder / n).is_file()]
        if present:
            found[role] = present[0]
        else:
            missing.append(" or ".join(names))
    if missing:
        raise InputError(Issue(file, "file_missing", "error", f"10x folder lacks {', '.join(missing)}"))
    return found


def _mtx_header(path: Path, *, file: str) -> tuple[int, int, int, int, int]:
    """(features, cells, non-zeros, bytes before the first entry, line of the size line) of a coordinate Matrix
    Market file; a file that cannot be read to there is a located error.
    """
    try:
        return _read_mtx_header(path, file=file)
    except READ_ERRORS as exc:
        raise unreadable(file, exc) from exc


def _read_mtx_header(path: Path, *, file: str) -> tuple[int, int, int, int, int]:
    offset = 0
    with open_text(path) as fh:
        banner = fh.readline()
        offset += len(banner)
        words = banner.removeprefix(b"\xef\xbb\xbf").decode(errors="replace").lower().split()  # a BOM: ignored
        if len(words) < 4 or not words[0].startswith("%%matrixmarket") or words[2] != "coordinate" \
                or words[3] == "pattern":
            raise InputError(Issue(file, "unsupported_mtx", "error", "expected a Matrix Market coordinate file "
                                   f"with values (banner {banner.decode(errors='replace').strip()!r})", 1))
        line = 1
        for raw in fh:
            line += 1
            offset += len(raw)
            if raw.startswith(b"%") or not raw.strip():
                continue
            try:
                rows, cols, nnz = (int(x) for x in raw.split())
            except ValueError as exc:
                raise InputError(Issue(file, "unsupported_mtx", "error", "size line must be 'features cells "
                                       "entries'", line, record=raw.decode(errors="replace").strip())) from exc
            return rows, cols, nnz, offset, line
    raise InputError(Issue(file, "empty_file", "error", "Matrix Market file has no size line"))


def _bad_entry_line(text: bytes, first_line: int) -> tuple[int, str]:
    """(line, text) of the first line of ``text`` that is not a comment nor 'feature cell value' numbers."""
    for i, raw in enumerate(text.split(b"\n")):
        words = raw.split()
        if not words or raw.startswith(b"%"):
            continue
        try:
            if len(words) == 3:
                _ = (int(words[0]), int(words[1]), float(words[2]))
                continue
        except ValueError:
            pass
        return first_line + i, raw.decode(errors="replace")
    return first_line, ""


def _mtx_blocks(path: Path, *, offset: int, n_features: int, n_cells: int, file: str,
                first_line: int = 1) -> Iterator[Block]:
    """Coordinate entries (feature, cell, value; 1-based) as cells x features blocks of MTX_BLOCK_BYTES of text.

    ``first_line``: the line number of the first entry, for the location of a malformed one; a file that cannot
    be read to its end (truncated gzip, I/O error) is a located error too.
    """
    try:
        yield from _read_mtx_blocks(path, offset=offset, n_features=n_features, n_cells=n_cells, file=file,
                                    first_line=first_line)
    except READ_ERRORS as exc:
        raise unreadable(file, exc) from exc


def _read_mtx_blocks(path: Path, *, offset: int, n_features: int, n_cells: int, file: str,
                     first_line: int) -> Iterator[Block]:
    schema = {"feature": pl.Int64, "cell": pl.Int64, "value": pl.Float64}
    line = first_line
    with open_text(path) as fh:
        fh.read(offset)
        rest = b""
        while True:
            chunk = fh.read(MTX_BLOCK_BYTES)
            text = rest + chunk
            cut = text.rfind(b"\n") + 1 if chunk else len(text)
            text, rest = text[:cut], text[cut:]
            if text.strip():
                try:
                    entries = pl.read_csv(io.BytesIO(text), separator=" ", has_header=False,
                                          new_columns=list(schema), schema_overrides=schema, comment_prefix="%")
                except pl.exceptions.PolarsError as exc:
                    bad, record = _bad_entry_line(text, line)
                    raise InputError(Issue(file, "bad_entry", "error", "an entry is not 'feature cell value' "
                                           "(two whole numbers and a number, separated by spaces)", bad,
                                           record=record)) from exc
                feature, cell = entries["feature"].to_numpy() - 1, entries["cell"].to_numpy() - 1
                if feature.size and (feature.min() < 0 or feature.max() >= n_features or cell.min() < 0
                                     or cell.max() >= n_cells):
                    raise InputError(Issue(file, "bad_entry", "error", "an entry lies outside the matrix size "
                                           f"({n_features} features x {n_cells} cells)"))
                yield slice(0, n_cells), slice(0, n_features), sp.csr_matrix(
                    (entries["value"].to_numpy(), (cell, feature)), shape=(n_cells, n_features))
            line += text.count(b"\n")
            if not chunk:
                return


def open_10x_mtx(folder: Path, files: dict[str, Path], *, file: str) -> CellMatrix:
    """A 10x Matrix Market folder (features x cells); entries are read in blocks of text."""
    n_features, n_cells, _, offset, size_line = _mtx_header(files["matrix"], file=f"{file}/{files['matrix'].name}")
    barcodes = pl.read_csv(files["barcodes"], separator="\t", has_header=False, infer_schema=False)
    features = pl.read_csv(files["features"], separator="\t", has_header=False, infer_schema=False,
                           quote_char=None)
    for what, frame, size in (("barcodes", barcodes, n_cells), ("features", features, n_features)):
        if frame.height != size:
            name = files[what].name
            raise InputError(Issue(f"{file}/{name}", "size_mismatch", "error", f"{name} has {frame.height} rows; "
                                   f"matrix.mtx declares {size} {'cells' if what == 'barcodes' else 'features'}"))
    types = features[:, 2] if features.width >= 3 else pl.Series([None] * features.height, dtype=pl.String)
    feature_frame = pl.DataFrame({"feature_id": features[:, 0], "feature_type": types})

    def blocks() -> Iterator[Block]:
        return _mtx_blocks(files["matrix"], offset=offset, n_features=n_features, n_cells=n_cells,
                           file=f"{file}/{files['matrix'].name}", first_line=size_line + 1)

    return CellMatrix(file, np.asarray(barcodes[:, 0].to_list(), dtype=object), feature_frame, blocks,
                      files["matrix"].name, ids_at={"barcodes": f"{file}/{files['barcodes'].name}",
                                                    "features": f"{file}/{files['features'].name}"}, text_ids=True)


# ------------------------------------------------------------------------------------------------ aggregation
def _first_fraction(values: np.ndarray) -> float | None:
    """The first value that is not a whole, finite, non-negative number; None when all are counts.

    One cheap test decides (integers: the minimum; floats: ``floor(v) - v`` is 0 for a whole number and non-zero
    or NaN for a fraction, NaN or an infinity); the bad value is looked for only when there is one.
    """
    if values.size == 0:
        return None
    if values.dtype.kind in "iub":
        whole = True
    else:
        distance = np.floor(values)
        with np.errstate(invalid="ignore"):  # inf - inf: NaN, as wanted
            distance -= values
        whole = not distance.any()
    if whole and values.min() >= 0:
        return None
    bad = values[(values != np.rint(values)) | (values < 0) | ~np.isfinite(values)]
    return float(bad[0])


def not_counts_message(matrix: CellMatrix, value: float) -> str:
    """Why a matrix is refused as counts, and which ``layer`` to declare instead (h5ad; a Cell Ranger matrix has
    no layers: the advice is its raw output).
    """
    if matrix.obs is None:  # 10x: a matrix.mtx folder or a Cell Ranger .h5
        what = "folder" if matrix.element.endswith((".mtx", ".mtx.gz")) else "file"
        advice = f"give the {what} as Cell Ranger wrote it (raw UMI counts), not a normalised export"
    elif matrix.layers:
        advice = f"declare `layer:` naming the layer with raw counts; this file's layers: {matrix.layers}"
    else:
        advice = ("the file has no layers: write the raw counts into one (adata.layers['counts']) and declare "
                  "`layer: counts`")
    kind = "non-finite" if not np.isfinite(value) else "negative" if value < 0 else "non-integer"
    return (f"{matrix.element} holds {kind} values (e.g. {value:g}): it is not raw counts (log-normalised?); "
            f"pseudobulk sums counts, so {advice}")


def _block_sums(values: sp.spmatrix | np.ndarray, codes: np.ndarray, n_rows: int) -> np.ndarray:
    """``n_rows x block columns`` float64 sums of one block's cells, ``codes``: the row of each of its cells.

    A compressed sparse block is summed as coordinates (row of each stored value's cell, its column, the value as
    float64) through scipy's COO to dense conversion, which adds repeated coordinates: one pass over the values,
    where the sparse indicator product (groups x cells @ block) took two passes and, with a CSC indicator, a
    conversion of the block to CSC (``bench/README.md``, session 12). A dense block is multiplied by the indicator.
    """
    n_cells, n_columns = values.shape
    if isinstance(values, np.ndarray):
        indicator = sp.csr_matrix((np.ones(n_cells), (codes, np.arange(n_cells))), shape=(n_rows, n_cells))
        return np.asarray(indicator @ values.astype(np.float64, copy=False))
    indices, indptr = np.asarray(values.indices), np.asarray(values.indptr)
    if isinstance(values, sp.csr_matrix | sp.csr_array):
        rows, columns = np.repeat(codes.astype(indices.dtype), np.diff(indptr)), indices
    elif isinstance(values, sp.csc_matrix | sp.csc_array):
        rows = codes.astype(indices.dtype)[indices]
        columns = np.repeat(np.arange(n_columns, dtype=indices.dtype), np.diff(indptr))
    else:
        raise TypeError(f"unexpected sparse block {type(values).__name__}")
    data = np.asarray(values.data, dtype=np.float64)  # counts summed exactly (float32 sums round past 2 ** 24)
    return sp.coo_matrix((data, (rows, columns)), shape=(n_rows, n_columns)).toarray()


def pseudobulk(matrix: CellMatrix, groups: np.ndarray, *, n_groups: int,
               features: np.ndarray | None = None) -> np.ndarray:
    """Sum of each group's cells: a dense ``n_groups x features`` float64 array, block by block.

    ``groups``: one code per cell (0 .. n_groups - 1; -1 leaves the cell out). Each block's values are added to
    their cell's group row (:func:`_block_sums`; the cells left out go to one extra row, dropped at the end), so
    memory is one block plus the result. ``features``: the feature columns to keep (all when None). Raises
    :class:`InputError` (``not_counts``) at the first block with a negative, non-integer or non-finite value.
    """
    n_features = matrix.features.height
    codes = np.where(groups >= 0, groups, n_groups)  # left out: the extra row n_groups
    total = np.zeros((n_groups + 1, n_features))
    for cells, columns, values in matrix.blocks():
        data = values.data if sp.issparse(values) else np.asarray(values)
        bad = _first_fraction(np.asarray(data))
        if bad is not None:
            mtx = matrix.element.endswith((".mtx", ".mtx.gz"))  # a 10x folder: name its matrix file
            raise InputError(Issue(f"{matrix.file}/{matrix.element}" if mtx else matrix.file, "not_counts",
                                   "error", not_counts_message(matrix, bad),
                                   column=None if matrix.obs is None else "layer"))
        total[:, columns] += _block_sums(values, codes[cells], n_groups + 1)
    total = total[:n_groups]
    return total if features is None else total[:, features]
