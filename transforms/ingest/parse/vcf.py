"""VCF (VEP ``CSQ``, SnpEff ``ANN`` or SnpEff 3 ``EFF`` annotated) -> native ``variants`` rows.

The data lines are read by polars' CSV reader as text and the fields the variants need cut out with string
expressions; a file with anything that reader would not read exactly alike (a short or blank line, a value that is
not a plain integer, ...) is read by oxbow (noodles, Rust) instead, which also locates bad records. Everything
after that is vectorised polars: the transcript annotations of all records are exploded, split by the subfield
order the header declares, matched to their alt allele and ranked, so choosing one consequence per variant costs a
few column operations, not a Python loop per transcript. The choice rule is
:data:`transforms.layers.variants.CONSEQUENCE_RULE`.
"""

from __future__ import annotations

import gzip
import importlib.machinery
import importlib.util
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from queue import Queue
from threading import Thread
from typing import IO, Any

import numpy as np
import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.maf import VARIANT_SCHEMA
from transforms.ingest.parse.text import (
    check_gzip_end,
    check_readable,
    is_gzipped,
    is_utf8,
    open_text,
    read_lines,
)
from transforms.issues import InputError, Issue, IssueLog
from transforms.layers.variants import CONSEQUENCE_RULE, SO_IMPACT, UNKNOWN_RANK, consequence_terms, variant_class

GENOTYPE_FIELDS = ("GT", "AD", "DP")
#: records per oxbow batch: bounds memory (a VEP record with 4 transcripts is ~1 kB of CSQ text)
BATCH_SIZE = 65_536
#: SnpEff 3 EFF subfields after the effect name, in the order SnpEff 3.x writes them
EFF_FIELDS = ("IMPACT", "Functional_Class", "Codon_Change", "Amino_Acid_Change", "Amino_Acid_Length",
              "Gene_Name", "Transcript_BioType", "Gene_Coding", "Feature_ID", "Exon_Rank")
#: what each annotation standard calls the subfields the choice needs
ANNOTATION_NAMES = {
    "CSQ": {"allele": "Allele", "allele_num": "ALLELE_NUM", "consequence": "Consequence", "impact": "IMPACT",
            "symbol": "SYMBOL", "gene": "Gene", "transcript": "Feature", "biotype": "BIOTYPE",
            "hgvsp": "HGVSp", "canonical": "CANONICAL"},
    "ANN": {"allele": "Allele", "consequence": "Annotation", "impact": "Annotation_Impact",
            "symbol": "Gene_Name", "gene": "Gene_ID", "transcript": "Feature_ID",
            "biotype": "Transcript_BioType", "hgvsp": "HGVS.p"},
    "EFF": {"consequence": "Effect", "impact": "IMPACT", "symbol": "Gene_Name", "transcript": "Feature_ID",
            "biotype": "Transcript_BioType", "hgvsp": "Amino_Acid_Change"},
}
#: the reported subfields of the chosen annotation
CHOSEN_FIELDS = ("consequence", "impact", "symbol", "gene", "transcript", "hgvsp")
#: an annotation's ordinal (its row among the batch's annotations) sits in the low bits of its ranking score
ORDINAL_SPAN = 1 << 41
AMINO_ACIDS = {
    "Ala": "A", "Arg": "R", "Asn": "N", "Asp": "D", "Cys": "C", "Gln": "Q", "Glu": "E", "Gly": "G", "His": "H",
    "Ile": "I", "Leu": "L", "Lys": "K", "Met": "M", "Phe": "F", "Pro": "P", "Ser": "S", "Thr": "T", "Trp": "W",
    "Tyr": "Y", "Val": "V", "Ter": "*", "Sec": "U", "Pyl": "O", "Xaa": "X",
}


@dataclass(frozen=True)
class VcfHeader:
    """What the ``##`` meta lines and the ``#CHROM`` line say: samples, FORMAT keys and the annotation layout."""

    n_lines: int
    samples: list[str]
    format_ids: set[str]
    annotation: str | None
    subfields: list[str]


def parse_vcf(path: Path, *, issues: IssueLog, display_name: str | None = None,
              sample: str | None = None) -> ParsedAssay:
    """Read a VCF into ``variants`` rows: one per sample and alt allele carried by that sample's genotype.

    Multi-allelic records give one row per alt allele. A sample whose genotype carries no alt allele (hom-ref
    ``0/0``, ``0`` on haploid X, or a no-call ``./.``) gets no row for that record; those genotypes are counted in
    ``metadata`` (``genotypes_hom_ref``, ``genotypes_no_call``). Spanning-deletion (``*``) and missing (``.``)
    alts are not variants and are skipped (counted). ``sample`` labels a sites-only file (one row per alt
    allele); for a file with samples it restricts the rows to that sample. When the FORMAT has no GT every alt
    counts as carried.

    ``vaf`` = AD alt / sum(AD) when all AD values are present, else AD alt / DP; ``depth`` = DP, else sum(AD).
    The consequence columns come from the one transcript annotation chosen per allele by
    :data:`transforms.layers.variants.CONSEQUENCE_RULE` (also in ``metadata['consequence_rule']``); ``feature_id`` is
    its gene symbol, else its gene ID. Records the reader cannot parse (truncated lines, a wrong field count) are
    reported as ``bad_record`` errors with their line and skipped; a non-integer POS keeps the row with a null
    ``position`` and a ``problem``.
    """
    name = display_name or path.name
    header = _read_header(path, name=name)
    gzipped = is_gzipped(path)
    if gzipped:
        check_gzip_end(path, file=name, issues=issues, padding_read=True)  # oxbow reads a padded file

    def check_stream() -> None:
        """A cut or corrupt gzip stream is a located error (its first line not held whole) before any other.

        Only called when something failed: decompressing the whole file in Python to look for a break costs more
        than the rest of the parse (3.7 of ~12 CPU s on the 1M-record bench file), and the fast path's reader
        decompresses the whole stream anyway and fails on every break Python's ``gzip`` fails on (a cut, a bad
        CRC or length, bytes after the last member), so a file it reads whole is intact.
        """
        if gzipped:
            check_readable(path, file=name)

    if sample is not None and header.samples and sample not in header.samples:
        check_stream()
        raise InputError(Issue(name, "unknown_sample", "error",
                               f"sample {sample!r} is not in the VCF (samples: {', '.join(header.samples)})",
                               header.n_lines))
    if not header.samples and sample is None:
        check_stream()
        raise InputError(Issue(name, "sites_only", "error",
                               "sites-only VCF (no sample columns): give the sample label with the 'sample' option",
                               header.n_lines))
    read_samples = [sample] if header.samples and sample is not None else header.samples
    genotype_fields = [f for f in GENOTYPE_FIELDS if f in header.format_ids]

    def read(source: Path, lines: np.ndarray | None = None) -> list[_BatchResult]:
        return [_variants(batch, header, samples=read_samples, genotype_fields=genotype_fields, label=sample)
                for batch in _batches(source, header, samples=read_samples, genotype_fields=genotype_fields,
                                      lines=lines)]

    try:
        try:
            try:
                parts = [_variants(batch, header, samples=read_samples, genotype_fields=genotype_fields,
                                   label=sample)
                         for batch in _text_batches(path, header, samples=read_samples,
                                                    genotype_fields=genotype_fields)]
            except Exception:
                check_stream()  # a broken stream fails the fast path somewhere (maybe on text decoded before the
                raise  # break): said as such first; an intact one goes on to the handling below
        except _NotPlain as odd:  # anything the fast path does not read exactly as oxbow would: oxbow decides
            try:
                parts = read(path)
            except _ReaderFailed as failed:  # oxbow names no line for a bad value: the fast path found one
                if odd.issue is None or f"field '{odd.field}'" not in str(failed.cause):
                    raise  # another problem (a short record, ...): located and dropped below
                raise InputError(replace(odd.issue, file=name)) from failed.cause
    except _ReaderFailed as failed:
        with tempfile.NamedTemporaryFile("wb", suffix=".vcf") as clean:
            kept = _drop_bad_records(path, header, clean=clean, issues=issues, name=name, cause=failed.cause)
            try:
                parts = read(Path(clean.name), kept)
            except _ReaderFailed as again:
                raise InputError(Issue(name, "unreadable_vcf", "error",
                                       f"VCF reader failed: {_reason(again.cause)}")) from again.cause
    frame = pl.concat([p.rows for p in parts]) if parts else pl.DataFrame(schema=VARIANT_SCHEMA)
    counts = {key: sum(p.counts.get(key, 0) for p in parts)
              for key in ("records", "alleles_skipped", "genotypes_hom_ref", "genotypes_no_call")}
    if counts["records"] == 0:  # as a MAF or SEG file with a header only: an empty call set is not a result
        raise InputError(Issue(name, "no_records", "error", "the VCF has a header but no records", header.n_lines))
    unknown = sorted({t for p in parts for t in p.unknown_terms})
    if unknown:
        issues.info("unknown_consequence", "consequence terms outside the SO severity order rank last: "
                    + ", ".join(unknown), file=name)
    bad_pos = frame.filter(pl.col("position").is_null())
    if bad_pos.height:
        issues.warning("bad_value", f"position is not an integer ({bad_pos.height} row(s); kept with a problem)",
                       file=name, line=bad_pos["line"][0], column="POS")
    if counts["alleles_skipped"]:
        issues.info("skipped_allele", f"{counts['alleles_skipped']} spanning-deletion '*' or missing '.' alt "
                    "allele(s) are not variants and were skipped", file=name)
    labels = [sample] if sample is not None else header.samples
    return ParsedAssay(
        records=frame.lazy(),
        columns=labels,
        metadata={"format": "vcf", "annotation": header.annotation, "variants": frame.height,
                  "samples": len(labels), **counts, "consequence_rule": CONSEQUENCE_RULE},
    )


@dataclass(frozen=True)
class _BatchResult:
    rows: pl.DataFrame
    counts: dict[str, int]
    unknown_terms: list[str]


class _NotPlain(Exception):
    """The polars text reader met a record it does not read exactly as oxbow; the file goes to oxbow instead.

    A wrong field count, a blank line, a value that is not a plain integer, text that is not UTF-8, ...
    ``issue``: where the first FORMAT ``field`` value that is not a plain integer is, reported if oxbow rejects
    the file for that field.
    """

    def __init__(self, message: str, issue: Issue | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.issue, self.field = issue, field


class _ReaderFailed(Exception):
    """oxbow rejected a record; carries its error so the caller can diagnose the file."""

    def __init__(self, cause: Exception):
        super().__init__(str(cause))
        self.cause = cause


def _variants(records: pl.DataFrame, header: VcfHeader, *, samples: list[str], genotype_fields: list[str],
              label: str | None) -> _BatchResult:
    """The ``variants`` rows of one batch of records (``record`` numbers the batch's rows, ``line`` is global)."""
    alleles = records.select("record", "ref", "alt").explode("alt")  # ALT [] gives no row, null a null one
    skipped = (pl.col("alt").is_in(["*", "."]) | pl.col("alt").is_null()).alias("skipped")
    alleles = alleles.with_columns(skipped)
    n_skipped = int(alleles["skipped"].sum())
    calls, counts = _calls(records, samples=samples, genotype_fields=genotype_fields, label=label)
    chosen, unknown = _choose_annotations(records, header)
    rows = _assemble(records, alleles, calls, chosen)
    return _BatchResult(rows, {"records": records.height, "alleles_skipped": n_skipped, **counts}, unknown)


def _batches(path: Path, header: VcfHeader, *, samples: list[str], genotype_fields: list[str],
             lines: np.ndarray | None = None) -> Iterator[pl.DataFrame]:
    """Batches of records as oxbow reads them, each with ``record`` (row in batch) and ``line`` (file line).

    A background thread reads the next batch while the caller works on this one (oxbow and polars both release
    the GIL), so reading and consequence choice use both cores. ``lines`` gives the file line of each record
    when some lines were dropped; otherwise records follow the header line by line.
    """
    with open(path, "rb") as fh:
        start = fh.read(18)
    gzipped = start[:2] == b"\x1f\x8b"
    bgzf = gzipped and bool(start[3] & 4) and start[12:14] == b"BC"
    queue: Queue[object] = Queue(maxsize=2)

    def produce() -> None:
        try:
            with gzip.open(path, "rb") if gzipped and not bgzf else nullcontext(str(path)) as source:
                scanner = _vcf_scanner()(
                    source, compressed=bgzf, fields=["chrom", "pos", "ref", "alt", "filter"],
                    info_fields=[header.annotation] if header.annotation else None,
                    samples=samples or None, genotype_fields=genotype_fields or None,
                ).scan(columns=None, batch_size=BATCH_SIZE)
                while True:
                    queue.put(pl.DataFrame(scanner.read_next_batch()))  # Arrow via the PyCapsule interface
        except StopIteration:  # the reader's end of file
            queue.put(None)
        except Exception as exc:
            queue.put(_ReaderFailed(exc))

    reader = Thread(target=produce, daemon=True)
    reader.start()
    offset = 0
    while (item := queue.get()) is not None:
        if isinstance(item, _ReaderFailed):
            raise item
        assert isinstance(item, pl.DataFrame)
        numbers = (lines[offset:offset + item.height] if lines is not None
                   else np.arange(header.n_lines + 1 + offset, header.n_lines + 1 + offset + item.height))
        offset += item.height
        yield item.with_columns(pl.Series("line", numbers, dtype=pl.Int64),
                                pl.int_range(pl.len(), dtype=pl.Int64).alias("record"))
    reader.join()


FIXED_COLUMNS = ("chrom", "pos", "id", "ref", "alt", "qual", "filter", "info")
#: a FORMAT value the fast path converts exactly as oxbow does (anything else goes to oxbow): digits or '.'
PLAIN_VALUE = {
    "GT": r"^(?:\.|\d{1,9})(?:[/|](?:\.|\d{1,9}))*$",
    "AD": r"^(?:\.|\d{1,9})(?:,(?:\.|\d{1,9}))*$",
    "DP": r"^(?:\.|\d{1,9})$",
}
#: more distinct FORMAT strings than this in one batch: not worth the per-format expressions, oxbow reads it
MAX_FORMATS = 32


def _text_batches(path: Path, header: VcfHeader, *, samples: list[str], genotype_fields: list[str]
                  ) -> Iterator[pl.DataFrame]:
    """Batches of records read by polars' CSV reader, in the shape :func:`_batches` gives (oxbow's).

    The data lines are read as tab-separated text columns (no quoting, the header skipped; plain or bgzipped
    gzip decoded by polars, streamed in batches so memory stays bounded) and only the fields the variants need
    are cut out with string expressions: ALT and FILTER split, the annotation INFO key extracted, GT/AD/DP
    taken from each sample by the position its record's FORMAT gives. On the 1M-record VEP bench file this costs
    6.1-6.8 s of CPU against oxbow's 7.8-9.6 s (oxbow decodes every INFO key and FORMAT value; see bench/README.md,
    Session 12: VCF). Whatever it would not read exactly as oxbow does raises
    :class:`_NotPlain` (before or after some batches), and the caller reads the file with oxbow.
    """
    names = [*FIXED_COLUMNS, *(["format"] if header.samples else []),
             *(f"sample_{i}" for i in range(len(header.samples)))]
    wanted = ["chrom", "pos", "ref", "alt", "filter"]
    if header.annotation:
        wanted.append("info")
    sample_columns = {s: f"sample_{header.samples.index(s)}" for s in samples} if genotype_fields else {}
    if sample_columns:
        wanted += ["format", *sample_columns.values()]
    if names[-1] not in wanted:  # the last field: null when a line is short
        wanted.append(names[-1])
    frame = pl.scan_csv(path, has_header=False, separator="\t", quote_char=None, skip_lines=header.n_lines,
                        new_columns=names, schema={n: pl.String for n in names}, infer_schema=False, glob=False,
                        raise_if_empty=False).select(wanted)
    offset = 0
    try:
        batches = iter(frame.collect_batches(chunk_size=BATCH_SIZE))
        while True:
            try:
                raw = next(batches)
            except StopIteration:
                return
            if not raw.height:
                continue
            if raw.width != len(wanted) or raw.null_count().sum_horizontal().item():
                raise _NotPlain("a blank line, an empty field or a line with too few fields")  # oxbow reports it
            records = _text_records(raw, header, sample_columns, genotype_fields,
                                    first_line=header.n_lines + 1 + offset)
            line = pl.int_range(header.n_lines + 1 + offset, header.n_lines + 1 + offset + raw.height,
                                dtype=pl.Int64)
            offset += raw.height
            yield records.with_columns(line.alias("line"), pl.int_range(pl.len(), dtype=pl.Int64).alias("record"))
    except (pl.exceptions.PolarsError, OSError) as exc:  # too many fields, not UTF-8, a gzip stream polars rejects
        raise _NotPlain(str(exc)) from exc


def _text_records(raw: pl.DataFrame, header: VcfHeader, sample_columns: dict[str, str],
                  genotype_fields: list[str], *, first_line: int) -> pl.DataFrame:
    """One batch of text columns as oxbow's columns.

    ``pos`` an integer, ``alt`` / ``filter`` lists, ``info`` a struct of the annotation list, each read sample a
    struct of GT (``allele`` list), AD (list) and DP.
    """
    pos = pl.col("pos").cast(pl.Int32, strict=False)
    columns: list[pl.Expr] = [
        pl.col("chrom"), pos.alias("pos"), pl.col("ref"),
        pl.when(pl.col("alt") == ".").then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(pl.col("alt").str.split(",")).alias("alt"),
        pl.when(pl.col("filter") == "PASS").then(pl.lit([], dtype=pl.List(pl.String)))  # oxbow: PASS = [], "." = null
        .when(pl.col("filter") != ".").then(pl.col("filter").str.split(";")).alias("filter"),
    ]
    if header.annotation:
        raw = raw.with_columns(_annotation_text(raw, header.annotation))
        value = pl.col("info")
        columns.append(pl.struct(pl.when(value != ".").then(value.str.split(",")).alias(header.annotation)
                                 ).alias("info"))
    # (sample, field, its text, where it is not plain)
    checks: list[tuple[str | None, str, pl.Expr, pl.Expr]] = [(None, "POS", pl.col("pos"), pos.is_null())]
    if sample_columns:
        formats = raw["format"].unique(maintain_order=True)
        if formats.len() > MAX_FORMATS:
            raise _NotPlain(f"more than {MAX_FORMATS} FORMAT strings in a batch")
        keys = [f.split(":") for f in formats.to_list()]
        deepest = max((k.index(f) for k in keys for f in genotype_fields if f in k), default=0)
        for sample, column in sample_columns.items():
            parts = pl.col(column).str.split_exact(":", deepest)
            values = {}
            for field in genotype_fields:
                cases = [(formats[i], k.index(field)) for i, k in enumerate(keys) if field in k]
                if not cases:
                    values[field] = pl.lit(None, dtype=pl.String)
                    continue
                text = parts.struct.field(f"field_{cases[0][1]}")
                if len(cases) > 1 or len(cases) < len(keys):  # FORMAT varies: the key's position per record
                    text = pl.coalesce([pl.when(pl.col("format") == f).then(parts.struct.field(f"field_{i}"))
                                        for f, i in cases])
                values[field] = text
                checks.append((sample, field, text, text.is_not_null() & ~text.str.contains(PLAIN_VALUE[field])))
            fields = []
            if "GT" in values:
                gt = values["GT"]
                fields.append(pl.when(gt != ".").then(pl.struct(
                    gt.str.replace_all("|", "/", literal=True).str.split("/").cast(pl.List(pl.Int32), strict=False)
                    .alias("allele"))).alias("GT"))
            if "AD" in values:
                ad = values["AD"]
                fields.append(pl.when(ad != ".").then(ad.str.split(",").cast(pl.List(pl.Int32), strict=False))
                              .alias("AD"))
            if "DP" in values:
                fields.append(values["DP"].cast(pl.Int32, strict=False).alias("DP"))
            columns.append(pl.struct(fields).alias(sample))
    out = raw.select(*columns, *(c.any().alias(f"check_{i}") for i, (*_, c) in enumerate(checks)))  # eager
    failed = [check for check, bad in zip(checks, out.select(pl.col("^check_.*$")).row(0), strict=True) if bad]
    if failed:
        located = [(issue, check[1]) for check in failed
                   if (issue := _first_odd_value(raw, check, first_line)) is not None]
        first = min(located, key=lambda found: found[0].line or 0) if located else (None, None)
        raise _NotPlain("a POS, FORMAT or escaped annotation value", *first)
    return out.select(pl.exclude("^check_.*$"))


PERCENT_ESCAPES = {"%3A": ":", "%3B": ";", "%3D": "="}
"""The VCF percent-encodings the fast path decodes in an annotation (``%25``, '%', last); any other one (``%2C``
inside a value, control characters) sends the file to oxbow, which decodes every INFO value after splitting it."""


def _annotation_text(raw: pl.DataFrame, key: str) -> pl.Series:
    """Each record's ``key`` INFO value as oxbow reads it: the last one when the key repeats, percent-decoded."""
    prefix = f"{key}="  # a regex with a capture group costs 30x more on ~1 kB of INFO a record
    value = raw.select(pl.col("info").str.split(";").list.eval(pl.element().filter(pl.element().str.starts_with(
        prefix))).list.last().str.slice(len(prefix))).to_series()
    if not value.str.contains("%", literal=True).any():  # most batches: nothing to decode
        return value
    known = value
    for escape in (*PERCENT_ESCAPES, "%25"):
        known = known.str.replace_all(escape, "", literal=True)
    if known.str.contains("%", literal=True).any():
        raise _NotPlain(f"a percent-encoding in {key} other than {', '.join(PERCENT_ESCAPES)} or %25")
    for escape, text in (*PERCENT_ESCAPES.items(), ("%25", "%")):  # %25 last: %253D is the text %3D
        value = value.str.replace_all(escape, text, literal=True)
    return value


def _first_odd_value(raw: pl.DataFrame, check: tuple[str | None, str, pl.Expr, pl.Expr], first_line: int
                     ) -> Issue | None:
    """A located error for the first FORMAT value a check found not to be a plain integer; None for POS (oxbow
    reads a non-integer POS as missing and the caller warns). ``file`` is left empty for the caller to fill.
    """
    sample, field, text, odd = check
    if sample is None:
        return None
    row, value = raw.with_row_index("row").filter(odd).select("row", text).row(0)
    kind = "an integer" if field == "DP" else "integers separated by ','" if field == "AD" else "allele numbers"
    return Issue("", "bad_value", "error", f"FORMAT {field} of sample {sample} is {value!r}, not {kind}",
                 first_line + row, column=sample)


@cache
def _vcf_scanner() -> Any:
    """The Rust VCF scanner class of oxbow, loaded without the ``oxbow`` package's ``__init__``.

    That ``__init__`` imports ``pyarrow.dataset``, which imports pandas: 1.1 s of CPU per process, more than a
    third of what reading a million records costs. The scanner itself hands Arrow batches to polars through the
    PyCapsule interface and needs neither. When oxbow is already imported, its module is used as it is.
    """
    module = sys.modules.get("oxbow.oxbow")
    if module is None:
        package = importlib.util.find_spec("oxbow")
        if package is None or not package.submodule_search_locations:
            raise ImportError("oxbow is not installed")
        folder = Path(package.submodule_search_locations[0])
        library = next(folder / f"oxbow{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES
                       if (folder / f"oxbow{suffix}").exists())
        spec = importlib.util.spec_from_file_location("oxbow.oxbow", library)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load oxbow's extension module {library}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["oxbow.oxbow"] = module  # a later ``import oxbow`` reuses it instead of loading it twice
    return module.PyVcfScanner


def _drop_bad_records(path: Path, header: VcfHeader, *, clean: IO[bytes], issues: IssueLog, name: str,
                      cause: Exception) -> np.ndarray:
    """Copy the file to ``clean`` without records of the wrong field count (and without a byte-order mark),
    reporting each; their line numbers. Text that is not UTF-8 is a located ``bad_encoding`` error.

    One Python pass, only after oxbow has rejected the file, to say exactly where and keep the rest readable.
    """
    expected = 9 + len(header.samples) if header.samples else 8
    kept: list[int] = []
    n_bad = 0
    not_utf8: int | None = None
    bom = False
    with open_text(path) as fh:
        for number, raw in enumerate(fh, start=1):
            if not_utf8 is None and not is_utf8(raw):
                not_utf8 = number
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                bom, raw = True, raw[3:]
            if number <= header.n_lines:
                clean.write(raw)
                continue
            text = raw.rstrip(b"\r\n")
            if not text:
                continue
            n = text.count(b"\t") + 1
            if n != expected:
                n_bad += 1
                issues.error("bad_record", f"record has {n} tab-separated fields, expected {expected}"
                             + (" (truncated line)" if n < 8 else ""), file=name, line=number,
                             record=text[:200].decode("utf-8", "replace"))
                continue
            clean.write(raw)
            kept.append(number)
    clean.flush()
    if not_utf8 is not None:
        raise InputError(Issue(name, "bad_encoding", "error", f"line {not_utf8} is not valid UTF-8 (VCF text is "
                               "UTF-8); save the file as UTF-8", not_utf8)) from cause
    if not kept or (not n_bad and not bom):
        raise InputError(Issue(name, "unreadable_vcf", "error", f"VCF reader failed: {_reason(cause)}")) from cause
    return np.asarray(kept, dtype=np.int64)


def _reason(cause: BaseException) -> str:
    """The message of oxbow's error without the Rust backtrace it carries when ``RUST_BACKTRACE`` is set."""
    return str(cause).split("Rust backtrace:", 1)[0].strip()



def _read_header(path: Path, *, name: str) -> VcfHeader:
    """Scan the ``##`` lines up to ``#CHROM`` (cheap: the header only) or raise :class:`InputError`."""
    if not path.exists():
        raise InputError(Issue(name, "file_missing", "error", "file does not exist"))
    format_ids: set[str] = set()
    info: dict[str, str] = {}
    try:
        for number, line in read_lines(path, file=name):  # a broken stream: located at its first cut line
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark: the reader gets a copy without it
            if number == 1 and not line.startswith("##fileformat=VCF"):
                raise InputError(Issue(name, "not_vcf", "error", "first line is not ##fileformat=VCF...", 1,
                                       record=line[:200]))
            if line.startswith("##FORMAT=<ID="):
                format_ids.add(line[13:].split(",", 1)[0])
            elif line.startswith("##INFO=<ID="):
                key = line[11:].split(",", 1)[0]
                info[key] = line
            elif line.startswith("#CHROM"):
                columns = line.split("\t")
                empty = [i for i, c in enumerate(columns[9:], start=10) if not c.strip()]
                if empty:  # a sample without a name would load as sample ''
                    raise InputError(Issue(name, "empty_column_name", "error", f"sample column {empty[0]} of the "
                                           "#CHROM line has no name", number))
                labels = [c.strip() for c in columns[9:]]  # sample labels are matched trimmed
                twice = sorted({c for c in labels if labels.count(c) > 1})
                if twice:
                    raise InputError(Issue(name, "duplicate_column", "error",
                                           f"sample {twice[0]!r} appears more than once in the #CHROM line",
                                           number, twice[0]))
                annotation, subfields = _annotation_layout(info)
                return VcfHeader(number, columns[9:], format_ids, annotation, subfields)
            elif not line.startswith("##"):
                break
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(Issue(name, "unreadable_file", "error", f"cannot read file: {exc}")) from exc
    raise InputError(Issue(name, "not_vcf", "error", "no #CHROM header line before the first record"))


def _annotation_layout(info: dict[str, str]) -> tuple[str | None, list[str]]:
    """Which annotation INFO key the file has and its subfield names (from the header's ``Format:``)."""
    for key in ("CSQ", "ANN"):
        if key in info:
            match = re.search(r"(?:Format|[Aa]nnotations): ?'?([^\"']+)", info[key])
            if match:
                return key, [f.strip() for f in match.group(1).split("|")]
    if "EFF" in info:
        return "EFF", ["Effect", *EFF_FIELDS]
    return None, []


def _calls(records: pl.DataFrame, *, samples: list[str], genotype_fields: list[str],
           label: str | None) -> tuple[pl.DataFrame, dict[str, int]]:
    """One row per (record, sample, alt index ``k``) carried by the genotype, with that sample's AD and DP."""
    if not samples:
        calls = records.select("record", pl.lit(label).alias("column"),
                               pl.int_ranges(1, pl.col("alt").list.len() + 1).alias("k")).explode("k")
        return calls.with_columns(pl.lit(None, dtype=pl.List(pl.Int64)).alias("AD"),
                                  pl.lit(None, dtype=pl.Int64).alias("DP")), {}
    per_sample = []
    for s in samples:
        fields = pl.col(s).struct
        per_sample.append(records.select(
            "record", pl.lit(s).alias("column"),
            fields.field("GT").struct.field("allele").cast(pl.List(pl.Int64)).alias("gt")
            if "GT" in genotype_fields else pl.lit(None, dtype=pl.List(pl.Int64)).alias("gt"),
            fields.field("AD").cast(pl.List(pl.Int64)).alias("AD")
            if "AD" in genotype_fields else pl.lit(None, dtype=pl.List(pl.Int64)).alias("AD"),
            fields.field("DP").cast(pl.Int64).alias("DP")
            if "DP" in genotype_fields else pl.lit(None, dtype=pl.Int64).alias("DP"),
        ))
    genotypes = pl.concat(per_sample)
    if "GT" not in genotype_fields:
        calls = genotypes.with_columns(
            pl.int_ranges(1, records["alt"].list.len().gather(genotypes["record"]) + 1).alias("k"))
        return calls.explode("k").drop("gt"), {}
    carried = pl.col("gt").list.eval(pl.element().filter(pl.element() > 0).unique(maintain_order=True))
    genotypes = genotypes.with_columns(carried.alias("k"))
    n_called = (pl.col("gt").list.len() - pl.col("gt").list.count_matches(None)).fill_null(0)
    n_carried = pl.col("k").list.len().fill_null(0)
    no_call = genotypes.filter(n_called == 0).height
    hom_ref = genotypes.filter((n_carried == 0) & (n_called > 0)).height
    calls = genotypes.filter(n_carried > 0).explode("k").drop("gt")
    return calls, {"genotypes_hom_ref": hom_ref, "genotypes_no_call": no_call}


def _vep_forms(records: pl.DataFrame) -> pl.DataFrame:
    """Each alt of the multi-allelic records as VEP writes it in CSQ ``Allele`` (VEP's VCF parser rule).

    When any alt differs in length from REF (an indel record) and REF and every non-``*`` alt share their first
    base, that base is trimmed from all of them (``-`` when nothing is left); otherwise alleles are kept.
    """
    multi = records.filter(pl.col("alt").list.len() > 1).select(
        "record", "ref", pl.col("alt"), pl.int_ranges(1, pl.col("alt").list.len() + 1).alias("k"),
    ).explode("alt", "k")
    shape = multi.group_by("record").agg(
        (pl.col("alt").str.len_chars() != pl.col("ref").str.len_chars()).any().alias("indel"),
        pl.concat([pl.col("ref").first(), pl.col("alt").filter(pl.col("alt") != "*")]).str.slice(0, 1)
        .n_unique().eq(1).alias("shared_first"),
    )
    trimmed = pl.col("alt").str.slice(1)
    return multi.join(shape, on="record").select(
        "record", "k",
        pl.when(pl.col("indel") & pl.col("shared_first") & (pl.col("alt") != "*"))
        .then(pl.when(trimmed == "").then(pl.lit("-")).otherwise(trimmed))
        .otherwise(pl.col("alt")).alias("allele"),
    )


def _annotation_list(text: pl.Series, *, pipes: int) -> pl.Series:
    """The one string oxbow gives for an annotation key declared ``Number=1``, cut into its annotations.

    oxbow percent-decodes the string before handing it over, so an encoded comma (``%2C``) inside a field looks
    like a separator: a piece with fewer than ``pipes`` '|' is joined, with its comma, to the pieces after it until
    it has them (each annotation has one '|' fewer than the header's subfields).
    """
    pieces = text.str.split(",")
    short = pieces.list.eval(pl.element().str.count_matches("|", literal=True) < pipes).list.any()
    if not short.any():
        return pieces

    def joined(items: list[str] | None) -> list[str] | None:
        if items is None:
            return None
        out: list[str] = []
        for item in items:
            if out and out[-1].count("|") < pipes:
                out[-1] += "," + item
            else:
                out.append(item)
        return out

    return pl.Series(text.name, [joined(items) if cut else items for items, cut in
                                 zip(pieces.to_list(), short.fill_null(False).to_list(), strict=True)],
                     dtype=pl.List(pl.String))


def _choose_annotations(records: pl.DataFrame, header: VcfHeader) -> tuple[pl.DataFrame, list[str]]:
    """The chosen annotation per (record, alt index ``k``): consequence, impact, gene, transcript, HGVSp.

    Only the subfields the rule needs are cut out of the annotation strings, and only where needed: consequence
    and CANONICAL for every annotation; BIOTYPE only for alleles not decided by their one CANONICAL annotation
    (an allele's only CANONICAL annotation wins whatever its terms; VEP marks one transcript a gene, so most
    alleles have one); the allele ones for multi-allelic records; the reported ones for the chosen annotation.
    Also returns the consequence terms outside the severity order (ranked last; every annotation's, chosen or
    not), for one info issue.
    """
    if header.annotation is None:
        return pl.DataFrame(schema={"record": pl.Int64, "k": pl.Int64, **dict.fromkeys(CHOSEN_FIELDS, pl.String)}), []
    index = {key: header.subfields.index(field) for key, field in ANNOTATION_NAMES[header.annotation].items()
             if field in header.subfields}
    value = pl.col("info").struct.field(header.annotation)
    if records.select(value).dtypes[0] == pl.String:  # oxbow, when the header says Number=1: the list as one string
        records = records.with_columns(_annotation_list(records.select(value).to_series(),
                                                        pipes=len(header.subfields) - 1).alias("_annotations"))
        value = pl.col("_annotations")
    annotations = records.select(
        "record", pl.col("alt").list.len().alias("n_alts"), value.alias("a"),
    ).explode("a").filter(pl.col("a").is_not_null() & (pl.col("a") != ""))
    if header.annotation == "EFF":  # Effect(IMPACT|...|Transcript|Exon) -> Effect|IMPACT|...|Transcript|Exon
        annotations = annotations.with_columns(
            pl.col("a").str.replace(r"\)$", "").str.replace("(", "|", literal=True))
    text = annotations["a"]
    consequence = _subfields(text, index, ["consequence"])["consequence"]  # every annotation's: unknown terms
    terms = consequence_terms(consequence)
    unknown = terms.filter(pl.col("severity") == UNKNOWN_RANK)["consequence"].to_list()
    if "canonical" in index:
        canonical, yes_rows, yes_text = _is_yes(text, index["canonical"])
    else:
        canonical, yes_rows, yes_text = np.zeros(text.len(), dtype=bool), np.empty(0, dtype=np.int64), text.clear()
    record, n_alts = annotations["record"].to_numpy(), annotations["n_alts"].to_numpy()

    def rank(rows: np.ndarray) -> pl.DataFrame:  # record and score of the annotations at rows; BIOTYPE cut here
        whole = rows.size == text.len()
        at = pl.Series("row", rows, dtype=pl.Int64)
        frame = pl.DataFrame({
            "record": record[rows], "row": at, "canonical": canonical[rows],
            "consequence": consequence if whole else consequence.gather(at),
            "biotype": _subfields(text if whole else _compact(text.gather(at)), index, ["biotype"])["biotype"],
        })
        severity = pl.col("consequence").replace_strict(terms["raw"], terms["severity"], default=None)
        return frame.select("record", ((~pl.col("canonical")).cast(pl.Int64) * (1 << 50)
                                       + severity.fill_null(99).cast(pl.Int64) * (1 << 42)
                                       + (pl.col("biotype") != "protein_coding").fill_null(True).cast(pl.Int64)
                                       * (1 << 41) + pl.col("row")).alias("score"))

    single = np.flatnonzero(n_alts == 1)
    lone, undecided = np.empty(0, dtype=np.int64), single
    if single.size and canonical.any():  # an allele's one CANONICAL annotation wins whatever its terms: no ranking
        group = np.cumsum(np.r_[True, record[single][1:] != record[single][:-1]]) - 1
        decided = (np.bincount(group[canonical[single]], minlength=group[-1] + 1) == 1)[group]
        lone, undecided = single[decided & canonical[single]], single[~decided]
    best = pl.concat([
        pl.DataFrame({"record": record[lone], "k": np.ones(lone.size, dtype=np.int64), "ordinal": lone},
                     schema={"record": pl.Int64, "k": pl.Int64, "ordinal": pl.Int64}),
        _best_per_record(rank(undecided)),
    ])
    several = np.flatnonzero(n_alts != 1)
    if several.size:
        scored = rank(several)
        alleles = _subfields(_compact(text.gather(several)), index, ["allele", "allele_num"])
        matched = _match_alleles(pl.concat([scored, alleles], how="horizontal"), records, index)
        best = pl.concat([best, matched.group_by("record", "k").agg(
            (pl.col("score").min() % ORDINAL_SPAN).alias("ordinal"))])
    chosen = _subfields(_chosen_text(text, best["ordinal"].to_numpy(), yes_rows, yes_text), index,
                        ["consequence", *CHOSEN_FIELDS[1:]])
    term = pl.col("consequence").replace_strict(terms["raw"], terms["consequence"], default=None)
    return pl.concat([best.select("record", "k"), chosen], how="horizontal").select(
        "record", "k", term.alias("consequence"),
        pl.coalesce(pl.col("impact"), term.replace_strict(SO_IMPACT, default=None, return_dtype=pl.String)
                    ).alias("impact"),
        "symbol", "gene", "transcript",
        _short_hgvsp(pl.col("hgvsp")).alias("hgvsp"),
    ), unknown


def _best_per_record(annotations: pl.DataFrame) -> pl.DataFrame:
    """The lowest-scoring annotation of each single-alt record (``k`` = 1): its ``ordinal``.

    Annotations come in record order, so a segmented minimum over the runs of equal ``record`` replaces a
    hash group-by.
    """
    record, score = annotations["record"].to_numpy(), annotations["score"].to_numpy()
    starts = np.flatnonzero(np.r_[True, record[1:] != record[:-1]]) if record.size else np.empty(0, dtype=np.int64)
    return pl.DataFrame({
        "record": record[starts], "k": np.ones(starts.size, dtype=np.int64),
        "ordinal": np.minimum.reduceat(score, starts) % ORDINAL_SPAN if starts.size else starts,
    }, schema={"record": pl.Int64, "k": pl.Int64, "ordinal": pl.Int64})


def _compact(strings: pl.Series) -> pl.Series:
    """The same strings copied into fresh buffers.

    A gather leaves views into the whole batch's annotation text, on which ``str.split_exact`` and regexes run
    about 2x slower (measured on 65k gathered VEP annotations: 0.033 s to split, 0.019 s compacted first);
    stripping a character no annotation ends with copies them.
    """
    return strings.str.strip_chars_end("\n")


def _subfields(annotations: pl.Series, index: dict[str, int], keys: list[str]) -> pl.DataFrame:
    """The ``keys`` subfields of each annotation string (null where empty or absent from the header).

    ``str.split_exact`` stops after the furthest wanted subfield, so the ~90 subfields of a VEP annotation are
    not all materialised.
    """
    present = [key for key in keys if key in index]
    split = annotations.str.split_exact("|", max((index[key] for key in present), default=0)).struct.unnest()
    return split.select(
        pl.when(pl.col(f"field_{index[key]}") != "").then(pl.col(f"field_{index[key]}")).alias(key)
        if key in index else pl.repeat(None, pl.len(), dtype=pl.String).alias(key)  # a bare literal: one row
        for key in keys
    )


def _is_yes(annotations: pl.Series, position: int) -> tuple[np.ndarray, np.ndarray, pl.Series]:
    """Whether subfield ``position`` is ``YES`` (VEP CANONICAL), checked only where ``YES`` occurs at all.

    CANONICAL sits far into a VEP annotation (field 25 of 90); a literal search rules out most annotations at
    memchr speed before a regex checks the few candidates. Also returns the candidates' rows and their text,
    compacted: most chosen annotations are among them (:func:`_chosen_text`).
    """
    maybe = annotations.str.contains("YES", literal=True)
    rows = np.flatnonzero(maybe.to_numpy())
    candidates = _compact(annotations.filter(maybe))  # a filter, not a gather of rows: 2x cheaper on views
    exact = candidates.str.contains(rf"^(?:[^|]*\|){{{position}}}YES(?:\||$)").to_numpy()
    flags = np.zeros(annotations.len(), dtype=bool)
    flags[rows[exact]] = True
    return flags, rows, candidates


def _chosen_text(annotations: pl.Series, rows: np.ndarray, yes_rows: np.ndarray, yes_text: pl.Series) -> pl.Series:
    """The annotations at ``rows``, compacted, taken from the compacted CANONICAL candidates where they are one.

    An allele's chosen annotation is usually its CANONICAL one, already copied out by :func:`_is_yes`: gathering
    from that copy instead of from the whole batch's text saves a gather and a copy of the chosen strings.
    """
    at = np.searchsorted(yes_rows, rows)
    found = at < yes_rows.size
    found[found] = yes_rows[at[found]] == rows[found]
    if found.all():
        if at.size == yes_text.len() and np.array_equal(at, np.arange(at.size)):  # every candidate, in order
            return yes_text
        return yes_text.gather(pl.Series(at, dtype=pl.Int64))
    others = np.flatnonzero(~found)
    at[others] = yes_text.len() + np.arange(others.size)
    source = pl.concat([yes_text, _compact(annotations.gather(pl.Series(rows[others], dtype=pl.Int64)))])
    return source.gather(pl.Series(at, dtype=pl.Int64))


def _match_alleles(annotations: pl.DataFrame, records: pl.DataFrame, index: dict[str, int]) -> pl.DataFrame:
    """Give each annotation of a multi-allelic record the alt index ``k`` it describes (maybe every alt).

    VEP ``ALLELE_NUM`` wins, then the ``Allele`` string compared with the alt as VEP writes it (shared first base
    of an indel record trimmed, ``-`` for empty), then with the alt as written; without either (SnpEff 3 EFF, VEP
    runs without Allele) the annotation describes every alt. ``score`` identifies an annotation.
    """
    k = pl.col("allele_num").cast(pl.Int64, strict=False)
    annotations = annotations.with_columns(k.alias("k"))
    unmatched = annotations.filter(pl.col("k").is_null())
    if not unmatched.height:
        return annotations
    alts = records.filter(pl.col("alt").list.len() > 1).select(
        "record", pl.col("alt").alias("allele"), pl.int_ranges(1, pl.col("alt").list.len() + 1).alias("k"),
    ).explode("allele", "k")
    unmatched = unmatched.drop("k")
    if "allele" in index:
        by_form = unmatched.join(_vep_forms(records), on=["record", "allele"], how="inner")
        by_raw = unmatched.join(by_form.select("record", "score"), on=["record", "score"], how="anti").join(
            alts, on=["record", "allele"], how="inner")
        matched = pl.concat([by_form, by_raw.select(by_form.columns)])
    else:
        matched = unmatched.join(alts.drop("allele"), on="record", how="inner")
    return pl.concat([annotations.filter(pl.col("k").is_not_null()), matched.select(annotations.columns)])


def _short_hgvsp(hgvsp: pl.Expr) -> pl.Expr:
    """``ENSP...:p.Arg132His`` (VEP/SnpEff ANN) or ``R132H`` (SnpEff 3) -> ``p.R132H``."""
    protein = hgvsp.str.replace(r"^[^:]*:", "")
    protein = protein.str.replace_many(list(AMINO_ACIDS), list(AMINO_ACIDS.values()))
    return protein.str.replace(r"^(?:p\.)?", "p.")


def _assemble(records: pl.DataFrame, alleles: pl.DataFrame, calls: pl.DataFrame, chosen: pl.DataFrame
              ) -> pl.DataFrame:
    """Put calls, alleles, record fields and the chosen annotation together into the ``variants`` columns.

    ``alleles`` has a row per alt of each record in record order (``record``, ``ref``, ``alt``, ``skipped``), so
    the allele a call or a chosen annotation names is found by position (the record's first allele row + ``k`` -
    1), not by a join: a call whose ``k`` the record has no alt for, or whose alt is skipped, gets no row; an
    annotation chosen for no such allele is not used.
    """
    n_alts = records["alt"].list.len().fill_null(0).to_numpy().astype(np.int64)
    first = np.searchsorted(alleles["record"].to_numpy(), np.arange(records.height))
    calls = calls.sort("record", "column", "k")
    record, k = calls["record"].to_numpy(), calls["k"].fill_null(0).to_numpy()  # k null: a null ALT list
    allele = first[record] + k - 1
    kept = (k >= 1) & (k <= n_alts[record])
    kept[kept] = ~alleles["skipped"].to_numpy()[allele[kept]]
    calls, record, allele = calls.filter(pl.Series(kept)), record[kept], allele[kept]
    at_record = pl.Series(record, dtype=pl.Int64)
    site = records.select(
        "line", pl.col("chrom").cast(pl.String).alias("chromosome"),
        pl.col("pos").cast(pl.Int64).alias("position"),
        pl.when(pl.col("filter").list.len() == 0).then(pl.lit("PASS"))  # oxbow: PASS = [], "." = null
        .otherwise(pl.col("filter").list.join(";")).alias("filter"),
    )
    chosen_k, chosen_record = chosen["k"].fill_null(0).to_numpy(), chosen["record"].to_numpy()
    named = (chosen_k >= 1) & (chosen_k <= n_alts[chosen_record])
    row_of = np.full(alleles.height, -1, dtype=np.int64)  # each allele's chosen annotation (-1: none)
    row_of[first[chosen_record[named]] + chosen_k[named] - 1] = np.flatnonzero(named)
    rows = row_of[allele]
    at_chosen = pl.Series(np.where(rows >= 0, rows, 0), dtype=pl.Int64)
    picked = chosen.drop("record", "k")
    picked = (picked[at_chosen].with_columns(  # gathered, then nulled where an allele has no chosen annotation
        pl.when(pl.Series(rows >= 0)).then(pl.col(c)).alias(c) for c in picked.columns) if picked.height
        else picked.clear(rows.size))
    frame = pl.concat([
        calls.select("record", "column", "k", "AD", "DP"),
        alleles.select("ref", "alt")[pl.Series(allele, dtype=pl.Int64)],
        site[at_record],
        picked,
    ], how="horizontal")
    ad_alt = pl.col("AD").list.get(pl.col("k"), null_on_oob=True)
    ad_sum = pl.col("AD").list.sum()
    ad_complete = pl.col("AD").list.count_matches(None) == 0
    return frame.lazy().select(  # lazy: repeated subexpressions computed once
        "column",
        pl.coalesce(pl.col("symbol"), pl.col("gene")).alias("feature_id"),
        "line", "chromosome", "position", "ref", "alt",
        variant_class(pl.col("ref"), pl.col("alt")).alias("variant_class"),
        "consequence",
        pl.lit(None, dtype=pl.String).alias("variant_classification"),
        pl.col("hgvsp").alias("protein_change"),
        pl.when(ad_complete & (ad_sum > 0)).then(ad_alt / ad_sum)
        .when(pl.col("DP") > 0).then(ad_alt / pl.col("DP")).alias("vaf"),
        pl.coalesce(pl.col("DP"), pl.when(ad_complete).then(ad_sum)).alias("depth"),
        "filter",
        pl.lit("vcf").alias("source_format"),
        pl.col("transcript").alias("transcript_id"),
        "impact",
        pl.col("gene").alias("ensembl_gene"),
        pl.when(pl.col("position").is_null()).then(pl.lit("position is not an integer")).alias("problem"),
    ).cast(VARIANT_SCHEMA).collect()
