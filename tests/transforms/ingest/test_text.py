from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import Bio.bgzf
import polars as pl
import pytest

from transforms.ingest.parse import text
from transforms.ingest.parse.matrix import parse_matrix
from transforms.ingest.parse.seg import parse_seg
from transforms.ingest.parse.vcf import parse_vcf
from transforms.ingest.samples import read_samples
from transforms.issues import InputError, IssueLog

# a count matrix of 10,000 genes x 3 samples: gene i has counts i, 2i, 3i (column sums 49,995,000 x 1, 2, 3 by
# hand: sum(range(10000)) = 9999 * 10000 / 2). The tables are larger than the sniffed start (64 KiB), so a stream cut
# at 3/4 is whole where the header is sniffed and breaks in the data
MATRIX = ("gene\tA\tB\tC\n" + "".join(f"G{i}\t{i}\t{2 * i}\t{3 * i}\n" for i in range(10000))).encode()
SEG = b"ID\tchrom\tloc.start\tloc.end\tnum.mark\tseg.mean\nS1\t1\t100\t200\t5\t0.5\nS1\t2\t300\t400\t7\t-0.25\n"
SAMPLES = b"sample_id\tsubject_id\tgroup\n" + b"".join(b"S%d\tP%d\tg%d\n" % (i, i, i % 2) for i in range(10000))


def _refuse_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, *, file: str) -> None:
        raise AssertionError(f"{file} decompressed by Python's gzip only to look for a break")

    monkeypatch.setattr(text, "check_readable", refuse)


def test_parse_matrix_intact_gzip_is_not_checked_before_the_reader(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # the readers decompress the whole stream and fail on a break, so the located check (a whole decompression by
    # Python's gzip, ~3x polars' cost) runs only when reading failed: an intact file never reaches it
    _refuse_check(monkeypatch)
    path = tmp_path / "counts.tsv.gz"
    path.write_bytes(gzip.compress(MATRIX))
    records = parse_matrix(path, issues=IssueLog("t")).records.collect()
    sums = dict(records.group_by("column").agg(pl.col("value").sum()).iter_rows())
    assert sums == {"A": 49995000, "B": 99990000, "C": 149985000}


def test_read_table_readers_intact_gzip_is_not_checked_before_the_reader(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_check(monkeypatch)
    seg, sheet = tmp_path / "cn.seg.gz", tmp_path / "samples.tsv.gz"
    seg.write_bytes(gzip.compress(SEG))
    sheet.write_bytes(gzip.compress(SAMPLES))
    assert parse_seg(seg, issues=IssueLog("t")).records.collect().height == 2
    assert read_samples(sheet, issues=IssueLog("t")).samples.height == 10000


def _cut(data: bytes) -> tuple[bytes, int]:
    """``data`` gzipped and cut at 3/4 of the stream, and the first line the cut stream does not hold whole."""
    packed = gzip.compress(data, mtime=0)
    cut = packed[: len(packed) * 3 // 4]
    held = zlib.decompressobj(wbits=31).decompress(cut)  # zlib's own count of what the cut stream holds
    return cut, held.count(b"\n") + 1


@pytest.mark.parametrize("reader", ["matrix", "samples"])
def test_cut_gzip_is_located_and_replaces_the_issues_of_the_failed_read(tmp_path: Path, reader: str) -> None:
    # a Latin-1 header (a warning while sniffing) and a stream cut in the data: the one issue is the stream's,
    # at its first line not held whole, as when the whole file was checked before it was read
    if reader == "matrix":
        data = MATRIX.replace(b"gene\t", b"g\xe8ne\t", 1)
    else:
        data = SAMPLES.replace(b"group", b"gr\xf6up", 1)
    cut, line = _cut(data)
    assert data[:1 << 16].count(b"\n") < line < data.count(b"\n")
    path = tmp_path / "table.tsv.gz"
    path.write_bytes(cut)
    issues = IssueLog("t")
    read = parse_matrix if reader == "matrix" else read_samples
    with pytest.raises(InputError) as caught:
        read(path, issues=issues, display_name="counts/table.tsv.gz")
    issue = caught.value.issue
    assert (issue.code, issue.file, issue.line) == ("corrupt_file", "counts/table.tsv.gz", line)
    assert issue.message.startswith("compressed file is truncated or corrupt")
    assert issues.issues == []


def test_cut_gzip_is_located_before_a_missing_column(tmp_path: Path) -> None:
    # the header lacks seg.mean and the stream is cut: the stream's error first, as before (the check ran first)
    data = SEG.replace(b"\tseg.mean", b"\tmean") + b"".join(b"S%d\t1\t1\t2\t3\t0.1\n" % i for i in range(10000))
    cut, line = _cut(data)
    assert data[:1 << 16].count(b"\n") < line < data.count(b"\n")
    path = tmp_path / "cn.seg.gz"
    path.write_bytes(cut)
    with pytest.raises(InputError) as caught:
        parse_seg(path, issues=IssueLog("t"))
    assert (caught.value.issue.code, caught.value.issue.line) == ("corrupt_file", line)
    path.write_bytes(gzip.compress(data))  # whole: the header's own error
    with pytest.raises(InputError) as caught:
        parse_seg(path, issues=IssueLog("t"))
    assert caught.value.issue.code == "missing_column"


def _bgzf(path: Path, text: bytes, *, block: int) -> int:
    """Write ``text`` as BGZF (Bio.bgzf: htslib's bgzip format) in blocks of ``block`` bytes; the data blocks."""
    with Bio.bgzf.BgzfWriter(path, "wb") as out:
        for start in range(0, len(text), block):
            out.write(text[start:start + block])
            out.flush()
    return -(-len(text) // block)


@pytest.mark.parametrize("reader", ["matrix", "vcf"])
def test_bgzf_cut_at_a_block_boundary_is_a_located_warning(tmp_path: Path, shared_data: Path, reader: str) -> None:
    # A BGZF file cut at a block boundary decompresses cleanly, only short: 10 of 25 records loaded with no issue
    # (review). Its missing end-of-file block (the SAM spec's 28 bytes, which Bio.bgzf writes on close) tells.
    if reader == "matrix":
        text = b"gene\tA\tB\n" + b"".join(b"G%d\t%d\t%d\n" % (i, i, 2 * i) for i in range(400))
        rows, block = 400, 1000
    else:
        text = (shared_data / "variants_annotated_vcf" / "vcf2maf_test_b38_input.vcf").read_bytes()
        rows, block = 25, 500  # grep -vc '^#': 25 records
    whole, cut = tmp_path / "whole.gz", tmp_path / "cut.gz"
    blocks = _bgzf(whole, text, block=block)
    data = whole.read_bytes()
    assert data.endswith(bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000"))
    # every block's length is in its header (BSIZE + 1, bytes 16-17): keep the first half of the data blocks
    offsets, at = [], 0
    while at < len(data):
        offsets.append(at)
        at += int.from_bytes(data[at + 16:at + 18], "little") + 1
    assert len(offsets) == blocks + 1
    cut.write_bytes(data[:offsets[blocks // 2]])

    def read(path: Path) -> tuple[int, list[tuple[str, str, str]]]:
        issues = IssueLog("t")
        if reader == "matrix":
            height = parse_matrix(path, issues=issues).records.collect()["line"].n_unique()
        else:
            height = parse_vcf(path, issues=issues, sample="TUMOR").records.collect().height
        return height, [(i.file, i.code, i.severity) for i in issues.issues]

    assert read(whole) == (rows, [])
    height, found = read(cut)
    assert 0 < height < rows
    assert ("cut.gz", "truncated_bgzf", "warning") in found  # beside the cut last line's own error, if any


def test_gzip_table_padded_with_zeros_is_a_located_corrupt_file(tmp_path: Path) -> None:
    # 512 zero bytes after the last member (a tape / dd copy): Python's gzip skips them, polars stops there, and the
    # study failed as "unreadable_input: invalid gzip header" naming no file (a VCF goes to oxbow, which reads it:
    # test_parse_vcf). An empty last member (9 zero bytes at the end: its deflate block's last byte, a zero CRC and
    # size) is no padding.
    text = b"gene\tA\tB\nTP53\t1\t2\nMYC\t3\t4\n"
    padded, empty_member = tmp_path / "padded.gz", tmp_path / "two.gz"
    padded.write_bytes(gzip.compress(text) + bytes(512))
    empty_member.write_bytes(gzip.compress(text) + gzip.compress(b""))
    ends = empty_member.read_bytes()[-10:]
    assert ends[0] != 0
    assert ends[1:] == bytes(9)
    assert parse_matrix(empty_member, issues=IssueLog("t")).records.collect().height == 4  # 2 genes x 2 samples
    with pytest.raises(InputError) as caught:
        parse_matrix(padded, issues=IssueLog("t"))
    issue = caught.value.issue
    assert (issue.file, issue.code) == ("padded.gz", "corrupt_file")
    trailer_zeros = len(gzip.compress(text)) - len(gzip.compress(text).rstrip(b"\0"))  # ISIZE's high bytes
    assert f"the file's last {512 + trailer_zeros} bytes are zeros" in issue.message
