"""Per-sample gene-set scores on a dense genes x samples block: ssGSEA, singscore and weighted z-score sums.

Every score is a few sparse matrix products of a (gene sets x genes) membership matrix with per-gene columns of
the block, so all sets and samples are scored at once (no loop over sets or samples):

- ``ssgsea``: Barbie et al. 2009 as in GSVA ``gsva(method="ssgsea", ssgsea.norm=FALSE)`` and gseapy's ``ES``: genes
  ranked by value within each sample, weights rank ** alpha (alpha 0.25), score = sum over the ranked list of the
  running difference between the weighted CDF of members and the CDF of non-members. The running sum has a closed
  form (gseapy's ``fast_random_walk_ss``): with i the 0-based position in decreasing order and w the weight,
  ES = sum_S w (n - i) / sum_S w - (n (n + 1) / 2 - sum_S (n - i)) / (n - k). Ties are ordered as gseapy orders
  them (a stable ascending sort, reversed).
- ``singscore``: Foroutan et al. 2018 (R singscore ``simpleScore``, centred): mean ascending rank (ties "min") of
  the members, scaled between its theoretical bounds (k + 1) / 2 and (2n - k + 1) / 2, minus 0.5; with up and
  down parts, up score + (1 - down score) - 1, so -1 .. 1.
- ``weighted``: sum over measured members of weight x the gene's z-score (NULL z-scores count 0).

Up / down signatures get ``ssgsea`` = ES(up) - ES(down); weighted signatures are split into up (weight > 0) and
down (weight < 0) parts for ``ssgsea`` and ``singscore``. Plain gene sets use their weight 1 in ``weighted``,
up / down signatures their sign.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.stats import rankdata

from transforms.expression.study import dense_block, distinct_rows
from transforms.qc.samples import complete_rows, index_blocks

ALPHA = 0.25
MIN_MEASURED = 5
"""Gene sets with fewer measured members than this in an assay are not scored (reported as skipped)."""
METHODS = ("ssgsea", "singscore", "weighted")


def _member_ranks(values: np.ndarray, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(samples x members) stable ascending 1-based positions and average ranks of the rows ``genes`` of a
    (genes x samples) block, without ranking every gene: one sort per sample, then a binary search of the
    members' values. Tied values are ordered by row (a stable sort), as gseapy orders them.
    """
    by_sample = np.ascontiguousarray(values.T)
    ordered = np.sort(by_sample, axis=1)
    wanted = by_sample[:, genes]
    order = np.argsort(wanted, axis=1)  # sorted needles make the binary searches cache-friendly
    needles = np.take_along_axis(wanted, order, axis=1)
    found_left = np.empty(wanted.shape, dtype=np.int64)
    found_right = np.empty_like(found_left)
    has_ties = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    for c in range(wanted.shape[0]):
        found_left[c] = np.searchsorted(ordered[c], needles[c], side="left")
        # without tied values anywhere in the sample, each value occupies exactly one rank
        found_right[c] = (np.searchsorted(ordered[c], needles[c], side="right") if has_ties[c]
                          else found_left[c] + 1)
    left = np.empty_like(found_left)
    right = np.empty_like(found_right)
    np.put_along_axis(left, order, found_left, axis=1)
    np.put_along_axis(right, order, found_right, axis=1)
    average = (left + right + 1) / 2
    positions = left + 1
    for sample in np.flatnonzero(((right - left) > 1).any(axis=1)):  # ties: equal values in earlier rows
        x = by_sample[sample]
        tied = np.flatnonzero(right[sample] - left[sample] > 1)
        candidates = np.flatnonzero(np.isin(x, x[genes[tied]]))
        key = x[candidates]
        sort = np.argsort(key, kind="stable")
        sorted_key = key[sort]
        index = np.arange(len(sorted_key))
        starts = np.ones(len(sorted_key), dtype=bool)
        starts[1:] = sorted_key[1:] != sorted_key[:-1]
        before = np.zeros(len(x), dtype=np.int64)
        before[candidates[sort]] = index - np.maximum.accumulate(np.where(starts, index, 0))
        positions[sample, tied] += before[genes[tied]]
    return positions.astype(np.float64), average


def _ssgsea_block(values: np.ndarray, member: sp.csr_array, genes: np.ndarray, k: np.ndarray, alpha: float
                  ) -> np.ndarray:
    n = values.shape[0]
    positions, average = _member_ranks(values, genes)
    weights = average ** alpha
    hit = (member @ (weights * positions).T) / (member @ weights.T)
    miss = (n * (n + 1) / 2 - member @ positions.T) / (n - k)
    return np.asarray(hit - miss)


def ssgsea(values: np.ndarray, membership: sp.csr_array, *, alpha: float = ALPHA, block: int = 256,
           threads: int = 2) -> np.ndarray:
    """Un-normalised ssGSEA enrichment scores: (sets x samples) from a (genes x samples) block.

    ``membership`` is a 0/1 (sets x genes) matrix; every set needs at least one member and one non-member.
    Samples are scored in blocks of ``block`` columns (bounded memory), ``threads`` blocks at a time (numpy's
    sort and the sparse products release the GIL).
    """
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError("ssgsea: the expression block has missing values; drop or impute those genes first")
    member = sp.csr_array(membership, dtype=np.float64)
    k = np.asarray(member.sum(axis=1)).ravel()[:, None]
    genes = np.flatnonzero(np.asarray(member.sum(axis=0)).ravel() > 0)  # only members need a rank
    member = sp.csr_array(member[:, genes])
    spans = [(start, min(start + block, values.shape[1])) for start in range(0, values.shape[1], block)]
    out = np.empty((member.shape[0], values.shape[1]))

    def run(span: tuple[int, int]) -> None:
        out[:, span[0]:span[1]] = _ssgsea_block(values[:, span[0]:span[1]], member, genes, k, alpha)

    if threads > 1 and len(spans) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, spans))
    else:
        for span in spans:
            run(span)
    return out


def singscore(values: np.ndarray, up: sp.csr_array, down: sp.csr_array | None = None) -> np.ndarray:
    """Centred singscore (sets x samples); rows of ``down`` without members score the up part alone."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    ranks = rankdata(values, axis=0, method="min")  # one call per study block; not on the bench's hot path

    def part(member: sp.csr_array) -> tuple[np.ndarray, np.ndarray]:
        member = sp.csr_array(member, dtype=np.float64)
        k = np.asarray(member.sum(axis=1)).ravel()[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (member @ ranks) / k
            low, high = (k + 1) / 2, (2 * n - k + 1) / 2
            return (mean - low) / (high - low), k

    score, _ = part(up)
    score = score - 0.5
    if down is not None:
        down_score, k_down = part(down)
        score = np.where(k_down > 0, score + (1 - down_score) - 0.5, score)
    return np.asarray(score)


@dataclass
class SetIndex:
    """The gene sets scored in one assay: names and sparse up / down / weight matrices over the block's genes."""

    keys: list[tuple[str, str]]
    up: sp.csr_array
    down: sp.csr_array
    weights: sp.csr_array
    skipped: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True)
class MemberIndex:
    """Gene-set members prepared for any study's gene axis: the mapped members (one row per set and gene, first
    kept) with their weight ``w`` and ``direction``, and every set's (library, gene_set) in registry order.

    Independent of the study, so a build prepares the shared libraries once instead of once per study (~0.1 CPU s
    a study over the ~325,000 shipped members).
    """

    measured: pl.DataFrame
    every: pl.DataFrame


def member_index(members: pl.DataFrame) -> MemberIndex:
    """:class:`MemberIndex` of ``gene_set_members`` rows."""
    measured = (members.filter(pl.col("gene_id").is_not_null())
                .sort("library", "gene_set", "gene_id", "identifier")  # the stored row order is free
                .unique(["library", "gene_set", "gene_id"], keep="first", maintain_order=True)
                .with_columns(w=pl.coalesce(pl.col("weight"), pl.col("sign").cast(pl.Float64), pl.lit(1.0)))
                .with_columns(direction=pl.when(pl.col("w") < 0).then(-1).otherwise(1)))
    return MemberIndex(measured, members.select("library", "gene_set").unique().sort("library", "gene_set"))


def index_sets(members: pl.DataFrame | MemberIndex, gene_ids: np.ndarray, *, min_measured: int = MIN_MEASURED
               ) -> SetIndex:
    """Sparse membership of every gene set over ``gene_ids`` (the block's rows); sets with fewer than
    ``min_measured`` measured members (or an empty up part) are skipped with the reason.
    """
    prepared = members if isinstance(members, MemberIndex) else member_index(members)
    row_of = pl.DataFrame({"gene_id": gene_ids, "row": np.arange(len(gene_ids))}, schema={"gene_id": pl.Int64,
                                                                                          "row": pl.Int64})
    measured = prepared.measured.join(row_of, on="gene_id", maintain_order="left")
    counts = measured.group_by("library", "gene_set").agg(n=pl.len(), n_up=(pl.col("direction") == 1).sum())
    report = prepared.every.join(counts, on=["library", "gene_set"], how="left", maintain_order="left").with_columns(
        pl.col("n", "n_up").fill_null(0))
    small = report.filter((pl.col("n") < min_measured) | (pl.col("n_up") == 0) | (pl.col("n") >= len(gene_ids)))
    skipped = [{"library": r["library"], "gene_set": r["gene_set"], "measured": r["n"],
                "reason": (f"{r['n']} measured member(s), fewer than {min_measured}" if r["n"] < min_measured
                           else "no measured member with a positive direction" if r["n_up"] == 0
                           else "every measured gene is a member")} for r in small.iter_rows(named=True)]
    keep = report.join(small.select("library", "gene_set"), on=["library", "gene_set"], how="anti").with_row_index(
        "set_row")
    # sorted coordinates: the sparse rows hold their genes in one order, so the products sum in one order
    rows = measured.join(keep.select("library", "gene_set", "set_row"), on=["library", "gene_set"]).sort(
        "set_row", "row")
    shape = (keep.height, len(gene_ids))
    set_row, gene_row = rows["set_row"].to_numpy(), rows["row"].to_numpy()
    is_up = rows["direction"].to_numpy() == 1

    def matrix(mask: np.ndarray, data: np.ndarray) -> sp.csr_array:
        return sp.csr_array((data[mask], (set_row[mask], gene_row[mask])), shape=shape)

    ones = np.ones(rows.height)
    return SetIndex(keys=list(zip(keep["library"].to_list(), keep["gene_set"].to_list(), strict=True)),
                    up=matrix(is_up, ones), down=matrix(~is_up, ones),
                    weights=matrix(np.ones(rows.height, dtype=bool), rows["w"].to_numpy()), skipped=skipped)


def score_block(values: np.ndarray, zscores: np.ndarray, sets: SetIndex, *, alpha: float = ALPHA
                ) -> dict[str, np.ndarray]:
    """Method -> (sets x samples) scores of one assay block (``values`` log scale, ``zscores`` per gene)."""
    if not sets.keys:
        return {m: np.empty((0, values.shape[1])) for m in METHODS}
    has_down = np.asarray(sets.down.sum(axis=1)).ravel() > 0
    up_es = ssgsea(values, sets.up, alpha=alpha)
    es = up_es.copy()
    if has_down.any():
        rows = np.flatnonzero(has_down)
        es[rows] -= ssgsea(values, sets.down[rows], alpha=alpha)
    z = np.nan_to_num(np.asarray(zscores, dtype=np.float64), nan=0.0)
    return {"ssgsea": es, "singscore": singscore(values, sets.up, sets.down), "weighted": np.asarray(sets.weights @ z)}


def score_frame(scores: dict[str, np.ndarray], sets: SetIndex, sample_ids: list[str], *, assay: str
                ) -> pl.DataFrame:
    """Long rows (assay, sample_id, library, gene_set, method, score) of :func:`score_block`'s output: per method,
    sets in :attr:`SetIndex.keys` order, each with every sample in ``sample_ids`` order (the matrices' row-major
    order).

    The identifier columns come from a cross join of the sets with the samples, not from Python lists of one
    string per row (~35 ms a small study's 130,000 rows, most of its scoring outside the scores).
    """
    schema = {"assay": pl.String, "sample_id": pl.String, "library": pl.String, "gene_set": pl.String,
              "method": pl.String, "score": pl.Float64}
    keys = pl.DataFrame({"library": [k[0] for k in sets.keys], "gene_set": [k[1] for k in sets.keys]},
                        schema={"library": pl.String, "gene_set": pl.String})
    cells = keys.join(pl.DataFrame({"sample_id": sample_ids}, schema={"sample_id": pl.String}), how="cross",
                      maintain_order="left_right")
    frames = [cells.with_columns(pl.lit(assay, pl.String).alias("assay"), pl.lit(method, pl.String).alias("method"),
                                 pl.Series("score", matrix.reshape(-1).astype(np.float64), dtype=pl.Float64))
              .select(list(schema)) for method, matrix in scores.items()]
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


@dataclass
class ScoreStage:
    """The frames of ``signature_scores`` and what the asset reports (sets scored and skipped per assay)."""

    frame: pl.DataFrame
    metadata: dict[str, object]
    blocks: list[tuple[str, list[str], SetIndex, dict[str, np.ndarray]]] = field(default_factory=list)


SCORE_SAMPLES = 500
"""Samples scored at a time: every score is per sample, so the block size changes no value."""

COLLECT_ROWS = 2_000_000
"""A study's normalised rows up to this many (~100 MB in memory) are read once for every dense block of its assays
(:func:`assay_blocks`); more stream, assay by assay, twice each."""


@dataclass(frozen=True)
class AssayBlock:
    """One assay's log2_value and zscore blocks (the same genes x samples axes, as :func:`dense_block` orders
    them: genes by gene_id, samples by id); ``rows`` are the complete genes, ``gene_ids`` theirs.
    """

    assay: str
    gene_ids: np.ndarray
    samples: list[str]
    values: np.ndarray
    zscores: np.ndarray
    rows: np.ndarray

    def part(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log2_value and zscore (complete genes x samples) of the samples ``cols`` (positions in ``samples``)."""
        cells = np.ix_(self.rows, cols)
        return (np.asarray(self.values[cells], dtype=np.float64),
                np.asarray(self.zscores[cells], dtype=np.float64))


def assay_blocks(normalized: pl.LazyFrame, gene_map: pl.LazyFrame, *, workdir: str | Path | None = None,
                 collect_rows: int = COLLECT_ROWS) -> Iterator[AssayBlock]:
    """Per assay: its log2_value and zscore values as dense genes x samples blocks (memory-mapped in ``workdir``
    when large), read one block of samples at a time by :meth:`AssayBlock.part`.

    One feature per gene (gene_id_map status ``mapped``); :func:`dense_block` sorts rows by gene_id, so tied values
    are ordered the same way in every run (as gseapy orders them given genes in that order), and samples by id;
    genes missing log2_value in any sample are left out. Nothing is pivoted or collected whole, but a study of at
    most ``collect_rows`` normalised rows: those are read (and joined) once for every block, not three times for
    each (:func:`dense_block` counts them, looks for gene ids, then streams them): ~25 of ~50 ms a small study.
    """
    mapped = gene_map.filter(pl.col("status") == "mapped").select("assay", "feature_id")
    rows = (normalized.filter(pl.col("gene_id").is_not_null())
            .join(mapped, on=["assay", "feature_id"])
            .select("assay", "sample_id", pl.col("gene_id").cast(pl.String).alias("feature_id"), "gene_id",
                    "log2_value", "zscore"))
    if normalized.select(pl.len()).collect().item() <= collect_rows:  # at most the rows, from the files' footers
        rows = rows.collect().lazy()
    for (assay,) in distinct_rows(rows, "assay"):
        part = rows.filter(pl.col("assay") == assay)
        values = dense_block(part, value="log2_value", workdir=workdir)
        zscores = dense_block(part, value="zscore", workdir=workdir)  # the same rows and columns: from `part`
        complete = complete_rows(values.values)
        yield AssayBlock(str(assay), values.gene_ids.to_numpy()[complete], values.sample_ids.to_list(),
                         values.values, zscores.values, complete)


def score_study(normalized: pl.LazyFrame, gene_map: pl.LazyFrame, members: pl.DataFrame | MemberIndex, *,
                min_measured: int = MIN_MEASURED, alpha: float = ALPHA, workdir: str | Path | None = None,
                samples_at_once: int = SCORE_SAMPLES) -> ScoreStage:
    """``signature_scores`` rows (without study_id) for every assay of a study with normalised expression.

    Scores ``samples_at_once`` samples at a time from the assay's dense blocks (memory-mapped in ``workdir`` when
    large); the scores (sets x samples, the table's own size) are then put together.
    """
    frames, kept = [], []
    metadata: dict[str, object] = {}
    for block in assay_blocks(normalized, gene_map, workdir=workdir):
        assay, gene_ids, samples = block.assay, block.gene_ids, block.samples
        sets = index_sets(members, gene_ids, min_measured=min_measured)
        parts = [score_block(*block.part(cols), sets, alpha=alpha)
                 for cols in index_blocks(len(samples), samples_at_once)]
        scores = {m: np.concatenate([p[m] for p in parts], axis=1) if parts else np.empty((len(sets.keys), 0))
                  for m in METHODS}
        frames.append(score_frame(scores, sets, samples, assay=assay))
        kept.append((assay, samples, sets, scores))
        spread = np.var(scores["ssgsea"], axis=1) if len(sets.keys) else np.empty(0)
        most_variable = [f"{sets.keys[i][0]}/{sets.keys[i][1]}" for i in np.argsort(-spread)[:5]]
        metadata[assay] = {"genes": len(gene_ids), "samples": len(samples), "sets_scored": len(sets.keys),
                           "most_variable_ssgsea": most_variable,
                           "sets_skipped": len(sets.skipped),
                           "skipped_examples": [f"{s['library']}/{s['gene_set']}: {s['reason']}"
                                                for s in sets.skipped[:10]]}
    frame = pl.concat(frames) if frames else pl.DataFrame(schema={
        "assay": pl.String, "sample_id": pl.String, "library": pl.String, "gene_set": pl.String,
        "method": pl.String, "score": pl.Float64})
    return ScoreStage(frame, metadata, kept)
