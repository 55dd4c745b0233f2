"""CMap / LINCS connectivity between up / down gene signatures and the ranked statistic of stored contrasts.

For a target ranked by its Wald statistic (decreasing), the weighted (p = 1, weights |stat|) Kolmogorov-Smirnov
enrichment score of the query's up genes and of its down genes is taken (Subramanian et al. 2005, in fgsea's O(k)
form); the connectivity is (ES_up - ES_down) / 2, or 0 when both have the same sign (Lamb et al. 2006;
Subramanian et al. 2017's WTCS). A contrast against itself scores near +1, against its reverse near -1.

The cross-study table is incremental: a row depends only on its query's gene lists (``query_version``) and its
target's DE commit (``target_version``); :func:`pending_pairs` gives the pairs whose row is missing or stale, so a
new contrast costs (queries + targets) new rows, not all pairs again. The table itself grows as
queries x targets (quadratic in the number of contrasts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

TOP_GENES = 100
"""Genes taken from each end of a contrast's statistic as its own signature."""
METHOD = "cmap_wks"


@dataclass(frozen=True)
class Query:
    kind: str
    study_id: str | None
    name: str
    up: tuple[int, ...]
    down: tuple[int, ...]

    @cached_property
    def version(self) -> str:
        """Hash of the gene lists; cached: :func:`pending_pairs` asks it once per pair."""
        text = f"{sorted(self.up)}|{sorted(self.down)}"
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Target:
    study_id: str
    contrast: str
    version: str
    gene_ids: np.ndarray
    """Genes ordered by decreasing statistic."""
    stat: np.ndarray


def make_target(study_id: str, contrast: str, stats: pl.DataFrame, *, version: str) -> Target:
    """A target from (gene_id, stat) rows (NULL statistics left out), ranked by decreasing statistic."""
    ranked = stats.select("gene_id", "stat").drop_nulls().sort("stat", "gene_id", descending=[True, False])
    return Target(study_id, contrast, version, ranked["gene_id"].to_numpy(), ranked["stat"].to_numpy())


def contrast_query(study_id: str, contrast: str, stats: pl.DataFrame, *, top: int = TOP_GENES) -> Query:
    """A contrast's own signature: its ``top`` highest and ``top`` lowest genes by statistic."""
    ranked = stats.select("gene_id", "stat").drop_nulls().sort("stat", "gene_id", descending=[True, False])
    up = ranked.filter(pl.col("stat") > 0).head(top)["gene_id"].to_list()
    down = ranked.filter(pl.col("stat") < 0).tail(top)["gene_id"].to_list()
    return Query("contrast", study_id, contrast, tuple(up), tuple(down))


def weighted_ks(target: Target, genes: tuple[int, ...]) -> tuple[float, int]:
    """Signed maximum deviation of the weighted running sum of ``genes`` in the target, and how many were found."""
    n = len(target.gene_ids)
    hits = np.flatnonzero(np.isin(target.gene_ids, np.asarray(genes, dtype=np.int64)))
    k = len(hits)
    if k == 0 or k == n:
        return 0.0, k
    weights = np.abs(target.stat[hits])
    total = weights.sum()
    norm = weights / total if total > 0 else np.full(k, 1.0 / k)
    tops = np.cumsum(norm) - (hits - np.arange(k)) / (n - k)
    bottoms = tops - norm
    high, low = tops.max(), bottoms.min()
    # a KS score lies in [-1, 1]; the sum of the normalised weights can round past 1 (1.0000000000000002 when the
    # genes are the target's top ones), which broke the table's contract and failed every study's matches
    return float(np.clip(high if high > -low else low, -1.0, 1.0)), k


def connectivity(query: Query, target: Target) -> dict[str, object]:
    """One ``signature_matches`` row: Lamb 2006 combination of the up and down weighted KS scores."""
    es_up, n_up = weighted_ks(target, query.up)
    es_down, n_down = weighted_ks(target, query.down)
    score: float | None
    if n_up and n_down:
        score = 0.0 if np.sign(es_up) == np.sign(es_down) else (es_up - es_down) / 2
    else:  # one-sided query: the score of the part that is there
        score = es_up if n_up else -es_down if n_down else None
    return {"query_kind": query.kind, "query_study_id": query.study_id, "query_name": query.name,
            "target_study_id": target.study_id, "target_contrast": target.contrast, "score": score,
            "n_up": n_up, "n_down": n_down, "method": METHOD, "query_version": query.version,
            "target_version": target.version}


def pending_pairs(queries: list[Query], targets: list[Target], existing: pl.DataFrame
                  ) -> tuple[pl.DataFrame, list[tuple[Query, Target]]]:
    """Rows of ``existing`` still valid (same query and target versions, both still present), and the pairs to
    compute. A contrast is never matched with itself.
    """
    valid = pl.DataFrame(
        [(q.kind, q.study_id, q.name, q.version, t.study_id, t.contrast, t.version)
         for q in queries for t in targets],
        schema={"query_kind": pl.String, "query_study_id": pl.String, "query_name": pl.String,
                "query_version": pl.String, "target_study_id": pl.String, "target_contrast": pl.String,
                "target_version": pl.String}, orient="row")
    keys = list(valid.columns)
    kept = existing.join(valid, on=keys, how="semi", nulls_equal=True)
    done = set(kept.select(keys).iter_rows())
    todo = [(q, t) for q in queries for t in targets
            if not (q.kind == "contrast" and q.study_id == t.study_id and q.name == t.contrast)
            and (q.kind, q.study_id, q.name, q.version, t.study_id, t.contrast, t.version) not in done]
    return kept, todo


def signature_queries(members: pl.DataFrame, sets: pl.DataFrame) -> list[Query]:
    """Every user signature with up / down parts (kind up_down, or weighted with both signs) as a query."""
    user = sets.filter(pl.col("kind") != "set").select("scope", "study_id", "library", "gene_set")
    rows = members.filter(pl.col("gene_id").is_not_null()).join(user, on=["scope", "study_id", "library",
                                                                          "gene_set"], nulls_equal=True)
    rows = rows.with_columns(direction=pl.coalesce(pl.col("sign").cast(pl.Float64), pl.col("weight")).sign())
    queries = []
    for (study_id, library, gene_set), part in rows.group_by("study_id", "library", "gene_set",
                                                             maintain_order=True):
        up = tuple(part.filter(pl.col("direction") > 0)["gene_id"].unique().sort().to_list())
        down = tuple(part.filter(pl.col("direction") < 0)["gene_id"].unique().sort().to_list())
        if up and down:
            queries.append(Query("signature", study_id, f"{library}/{gene_set}", up, down))
    return queries


def match_signatures(queries: list[Query], targets: list[Target], existing: pl.DataFrame
                     ) -> tuple[pl.DataFrame, int]:
    """The full ``signature_matches`` table: still-valid rows of ``existing`` plus the pending pairs computed;
    and how many pairs were computed.
    """
    queries = [q for q in queries if q.up or q.down]  # a contrast without mapped genes has no signature
    targets = [t for t in targets if len(t.gene_ids)]
    kept, todo = pending_pairs(queries, targets, existing)
    new = pl.DataFrame([connectivity(q, t) for q, t in todo], schema=existing.schema, orient="row")
    return pl.concat([kept.select(existing.columns), new]), len(todo)
