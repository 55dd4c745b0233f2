"""parse_vcf on the real annotated VCFs; expected values from grep/awk on the raw files and hand reasoning."""

from __future__ import annotations

import gzip
import subprocess
import sys
import zlib
from pathlib import Path

import Bio.bgzf
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from transforms.ingest.parse.vcf import parse_vcf
from transforms.issues import InputError, IssueLog


def _vcf(shared_data: Path, name: str) -> Path:
    return shared_data / "variants_annotated_vcf" / name


def test_parse_vcf_sites_only_multiallelic_split(shared_data: Path) -> None:
    issues = IssueLog("t")
    parsed = parse_vcf(_vcf(shared_data, "bcftools_split-vep_VEP_CSQ_sites.vcf"), issues=issues, sample="S1")
    frame = parsed.records.collect()
    # tests/data keeps the first 270 lines and every record with a '*' ALT (variants_annotated_vcf/SOURCE.md)
    assert parsed.metadata["records"] == 285  # grep -vc '^#'
    # awk -F'\t' '!/^#/{n=split($5,a,","); if(n>1){m++; ma+=n}; for(i=1;i<=n;i++){t++; if(a[i]=="*") s++}}
    #   END{print m, ma, t, s}' -> 25 records with a comma in ALT holding 52 alts -> 312 alts, 20 of them '*'
    assert frame.height == 292
    assert parsed.metadata["alleles_skipped"] == 20
    assert set(frame["column"]) == {"S1"}
    assert [i.code for i in issues.issues] == ["skipped_allele"]


def test_parse_vcf_vep_canonical_then_severity(shared_data: Path) -> None:
    frame = parse_vcf(_vcf(shared_data, "bcftools_split-vep_VEP_CSQ_sites.vcf"), issues=IssueLog("t"),
                      sample="S1").records.collect()
    # grep -n $'\t14971\t': line 46, C>T with 6 CSQ entries (Consequence|SYMBOL|Feature|CANONICAL, IMPACT):
    #   splice_region&nc_exon WASH7P ENST00000423562 -    LOW
    #   splice_region&nc_exon WASH7P ENST00000438504 YES  LOW
    #   downstream            DDX11L1 ENST00000456328 YES MODIFIER
    #   intron&nc_transcript  WASH7P ENST00000488147 / ENST00000538476 -, splice_region&nc_exon ENST00000541675 -
    # CANONICAL first leaves 438504 and 456328; splice_region_variant (LOW) outranks downstream -> ENST00000438504,
    # although ENST00000423562 has the same consequence and is listed first.
    row = frame.filter(pl.col("position") == 14971).row(0, named=True)
    assert row["line"] == 46
    assert row["transcript_id"] == "ENST00000438504"
    assert row["consequence"] == "splice_region_variant"
    assert row["impact"] == "LOW"
    assert row["feature_id"] == "WASH7P"
    assert row["ensembl_gene"] == "ENSG00000227232"


def test_parse_vcf_vep_protein_change_short(shared_data: Path) -> None:
    frame = parse_vcf(_vcf(shared_data, "bcftools_split-vep_VEP_CSQ_sites.vcf"), issues=IssueLog("t"),
                      sample="S1").records.collect()
    # awk '$2==69428': T>G, canonical OR4F5 missense, HGVSp ENSP00000334393.3:p.Phe113Cys
    row = frame.filter(pl.col("position") == 69428).row(0, named=True)
    assert (row["consequence"], row["protein_change"]) == ("missense_variant", "p.F113C")
    # awk '$2==69469': ACAATT>A, VEP Allele '-', frameshift p.Thr127AsnfsTer38
    row = frame.filter(pl.col("position") == 69469).row(0, named=True)
    assert (row["variant_class"], row["protein_change"]) == ("deletion", "p.T127Nfs*38")


def test_parse_vcf_multiallelic_annotations_by_allele(shared_data: Path) -> None:
    frame = parse_vcf(_vcf(shared_data, "bcftools_split-vep_VEP_CSQ_sites.vcf"), issues=IssueLog("t"),
                      sample="S1").records.collect()
    # awk '$2==129148': GT>GTT,G; CSQ Allele TT (ALLELE_NUM 1) and '-' (ALLELE_NUM 2), both upstream of CICP27
    rows = frame.filter(pl.col("position") == 129148).sort("alt")
    assert rows["alt"].to_list() == ["G", "GTT"]
    assert rows["variant_class"].to_list() == ["deletion", "insertion"]
    assert rows["consequence"].to_list() == ["upstream_gene_variant"] * 2


def test_parse_vcf_vep_allele_trimming_without_allele_num(tmp_path: Path) -> None:
    # VEP trims the first base shared by REF and all alts of an indel record: GT>G,GTT -> '-' and 'TT'
    path = tmp_path / "trim.vcf"
    path.write_text(
        "##fileformat=VCFv4.2\n"
        '##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. '
        'Format: Allele|Consequence|IMPACT|SYMBOL|Gene|Feature|BIOTYPE|CANONICAL|HGVSp">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        "1\t100\t.\tGT\tG,GTT\t50\tPASS\tCSQ=TT|intron_variant|MODIFIER|A|ENSGA|ENSTA|protein_coding|YES|,"
        "-|frameshift_variant|HIGH|A|ENSGA|ENSTA|protein_coding|YES|,"
        "-|stop_gained|HIGH|B|ENSGB|ENSTB|protein_coding||\n"
    )
    frame = parse_vcf(path, issues=IssueLog("t"), sample="S").records.collect().sort("alt")
    # alt G ('-'): canonical frameshift beats the more severe but non-canonical stop_gained
    assert frame["consequence"].to_list() == ["frameshift_variant", "intron_variant"]
    assert frame["impact"].to_list() == ["HIGH", "MODIFIER"]
    assert frame["line"].to_list() == [4, 4]


def test_parse_vcf_haploid_three_samples(shared_data: Path) -> None:
    parsed = parse_vcf(_vcf(shared_data, "cyvcf2_test-haploidX_VEP81_CSQ_3samples.vcf"), issues=IssueLog("t"))
    frame = parsed.records.collect()
    # tests/data keeps the first 300 lines: 51 header lines, 249 records (variants_annotated_vcf/SOURCE.md)
    # per sample column: awk '!/^#/{split($c,g,":"); if (g[1] ~ /[1-9]/) n++}' -> 146, 179, 146
    assert dict(frame.group_by("column").len().iter_rows()) == {"37150": 146, "37165": 179, "38008": 146}
    # column 10 GTs: 146 '1', 14 '0', 89 '.' ; all three columns (else-if on g[1] ~ /\./, else hom-ref):
    # 86 hom-ref, 190 no-call genotypes (the same awk on the whole file gives 274 and 618)
    assert parsed.metadata["genotypes_hom_ref"] == 86
    assert parsed.metadata["genotypes_no_call"] == 190
    # line 53: chrX 2724760 T>C, sample 37165 '1:0,8,2:10' -> AD alt 8 / (0+8+2) = 0.8, DP 10
    row = frame.filter((pl.col("position") == 2724760) & (pl.col("column") == "37165")).row(0, named=True)
    assert row["line"] == 53
    assert row["vaf"] == pytest.approx(0.8)
    assert row["depth"] == 10
    # its CSQ (no Allele / IMPACT subfields): missense only in ENST00000419513 (others intron) -> chosen
    assert (row["consequence"], row["transcript_id"], row["impact"]) == (
        "missense_variant", "ENST00000419513", "MODERATE")


def test_parse_vcf_snpeff_eff(shared_data: Path) -> None:
    frame = parse_vcf(_vcf(shared_data, "cyvcf2_test_snpeff3_EFF.vcf"), issues=IssueLog("t")).records.collect()
    # line 125: chr1 30895 T>C, GTs 0/1 0/1 0/0 0/0 -> rows for 1094PC0005 and 1094PC0009 only
    rows = frame.filter(pl.col("position") == 30895)
    assert rows["column"].to_list() == ["1094PC0005", "1094PC0009"]
    # EFF: 3 DOWNSTREAM, 2 INTRON (MIR1302-10 ENST00000469289 listed first, then ENST00000473358), 5 UPSTREAM.
    # INTRON -> intron_variant outranks upstream/downstream; neither intron is protein_coding -> first listed.
    row = rows.row(0, named=True)
    assert row["line"] == 125
    assert (row["consequence"], row["feature_id"], row["transcript_id"]) == (
        "intron_variant", "MIR1302-10", "ENST00000469289")
    assert row["vaf"] == pytest.approx(1 / 8)  # '0/1:7,1:8' -> 1 / (7 + 1)
    # awk '$2==69511': NON_SYNONYMOUS_CODING(MODERATE|MISSENSE|Aca/Gca|T141A|...|OR4F5|...)
    row = frame.filter(pl.col("position") == 69511).row(0, named=True)
    assert (row["consequence"], row["protein_change"], row["impact"]) == ("missense_variant", "p.T141A", "MODERATE")


def test_parse_vcf_tumour_normal_matches_vcf2maf(shared_data: Path) -> None:
    frame = parse_vcf(_vcf(shared_data, "vcf2maf_test_b38_input.vcf"), issues=IssueLog("t"),
                      sample="TUMOR").records.collect()
    assert frame.height == 25
    # '0/1:.,21:54' at 34792292: ref depth missing -> 21 / DP 54, the MAF's t_alt_count / t_depth
    first = frame.row(0, named=True)
    assert first["vaf"] == pytest.approx(21 / 54)
    assert first["depth"] == 54
    # awk -F'\t' 'NR>2{print $40, $42}' vcf2maf_test_b38_output.maf: t_depth and t_alt_count of the 25 variants
    t_depth = [54, 901, 504, 883, 862, 611, 51, 1140, 352, 1199, 343, 287, 191, 331, 512, 1224, 380, 356, 366,
               454, 667, 113, 101, 950, 944]
    t_alt = [21, 123, 54, 225, 74, 162, 17, 130, 23, 307, 153, 138, 99, 96, 77, 373, 30, 96, 173, 29, 60, 45, 13,
             123, 199]
    expected = [a / d for a, d in zip(t_alt, t_depth, strict=True)]
    # vcf2maf divides by DP; we divide by sum(AD) when AD is complete, which differs where sum(AD) != DP:
    # 38575698 '0/1:223,96:331' -> 96/319, 41479219 '0/1:782,373:1224' -> 373/1155
    expected[13], expected[15] = 96 / 319, 373 / 1155
    assert frame["vaf"].to_list() == pytest.approx(expected)


def test_parse_vcf_non_integer_position(shared_data: Path, tmp_path: Path) -> None:
    lines = _vcf(shared_data, "vcf2maf_test_b38_input.vcf").read_text().splitlines()
    fields = lines[11].split("\t")  # line 12: 21 34880595 C>T
    fields[1] = "34x"
    lines[11] = "\t".join(fields)
    path = tmp_path / "badpos.vcf"
    path.write_text("\n".join(lines) + "\n")
    issues = IssueLog("t")
    frame = parse_vcf(path, issues=issues, sample="TUMOR").records.collect()
    row = frame.filter(pl.col("line") == 12).row(0, named=True)
    assert row["position"] is None
    assert row["problem"] == "position is not an integer"
    assert [(i.code, i.line) for i in issues.issues] == [("bad_value", 12)]


def test_parse_vcf_truncated_line_is_reported_and_skipped(shared_data: Path, tmp_path: Path) -> None:
    lines = _vcf(shared_data, "vcf2maf_test_b38_input.vcf").read_text().splitlines()
    lines[12] = lines[12][:15]  # line 13: '21\t34880650\tT' cut mid-record
    path = tmp_path / "trunc.vcf"
    path.write_text("\n".join(lines) + "\n")
    issues = IssueLog("t")
    frame = parse_vcf(path, issues=issues, sample="TUMOR").records.collect()
    assert frame.height == 24
    assert 13 not in frame["line"].to_list()
    assert frame["line"].to_list()[6] == 14
    assert [(i.code, i.line, i.severity) for i in issues.issues] == [("bad_record", 13, "error")]


def test_parse_vcf_sites_only_needs_sample(shared_data: Path) -> None:
    with pytest.raises(InputError) as caught:
        parse_vcf(_vcf(shared_data, "bcftools_split-vep_VEP_CSQ_sites.vcf"), issues=IssueLog("t"))
    assert caught.value.issue.code == "sites_only"


def test_parse_vcf_not_a_vcf(tmp_path: Path) -> None:
    path = tmp_path / "x.vcf"
    path.write_text("chrom\tpos\n1\t2\n")
    with pytest.raises(InputError) as caught:
        parse_vcf(path, issues=IssueLog("t"), sample="S")
    assert (caught.value.issue.code, caught.value.issue.line) == ("not_vcf", 1)


def test_parse_vcf_snpeff_ann_per_allele(tmp_path: Path) -> None:
    # no real SnpEff >= 4 ANN file is available (see SOURCE.md): a hand-written record, GT 1/2 carries both alts
    path = tmp_path / "ann.vcf"
    path.write_text(
        "##fileformat=VCFv4.2\n"
        "##INFO=<ID=ANN,Number=.,Type=String,Description=\"Functional annotations: 'Allele | Annotation | "
        "Annotation_Impact | Gene_Name | Gene_ID | Feature_Type | Feature_ID | Transcript_BioType | Rank | HGVS.c | "
        "HGVS.p | cDNA.pos / cDNA.length | CDS.pos / CDS.length | AA.pos / AA.length | Distance | ERRORS' \">\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
        "1\t200\t.\tC\tT,A\t50\tq10;LowDP\tANN="
        "T|upstream_gene_variant|MODIFIER|G2|ENSG2|transcript|ENST2|protein_coding||||||||,"
        "T|missense_variant|MODERATE|G1|ENSG1|transcript|ENST1|protein_coding|1/2|c.1C>T|p.Arg1Cys|||||,"
        "A|stop_gained|HIGH|G1|ENSG1|transcript|ENST1|protein_coding|1/2|c.1C>A|p.Arg1*|||||\tGT\t1/2\n"
    )
    frame = parse_vcf(path, issues=IssueLog("t")).records.collect()
    assert frame["alt"].to_list() == ["T", "A"]
    assert frame["consequence"].to_list() == ["missense_variant", "stop_gained"]
    assert frame["protein_change"].to_list() == ["p.R1C", "p.R1*"]
    assert frame["feature_id"].to_list() == ["G1", "G1"]
    assert frame["filter"].to_list() == ["q10;LowDP"] * 2


def test_parse_vcf_plain_gzip_and_bgzf_read_alike(shared_data: Path, tmp_path: Path) -> None:
    source = _vcf(shared_data, "vcf2maf_test_b38_input.vcf")
    plain = tmp_path / "plain.vcf.gz"
    plain.write_bytes(gzip.compress(source.read_bytes()))
    bgzf = tmp_path / "bgzf.vcf.gz"
    # Bio.bgzf writes the BGZF of htslib's bgzip; a block every 500 bytes splits lines across blocks
    text = source.read_bytes()
    with Bio.bgzf.BgzfWriter(bgzf, "wb") as out:
        for start in range(0, len(text), 500):
            out.write(text[start : start + 500])
            out.flush()
    with open(bgzf, "rb") as handle:
        assert handle.read(16)[12:14] == b"BC"  # the BGZF extra field that parse_vcf sniffs
        handle.seek(0)
        # ceil(wc -c / 500) data blocks plus the empty end-of-file block
        assert len(list(Bio.bgzf.BgzfBlocks(handle))) == -(-len(text) // 500) + 1 > 3
    frames = [parse_vcf(p, issues=IssueLog("t"), sample="TUMOR").records.collect() for p in (plain, bgzf)]
    # grep -vc '^#' vcf2maf_test_b38_input.vcf: 25 records, all single-alt and carried by TUMOR
    assert frames[0].height == frames[1].height == 25
    assert frames[0].equals(frames[1])
    assert frames[0]["line"].to_list() == list(range(7, 32))  # 6 header lines (grep -c "^#"), 31 lines (wc -l)


def test_parse_vcf_intact_gzip_is_decompressed_once(shared_data: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # the reader decompresses the whole stream and fails on a break, so an intact file is not also decompressed by
    # Python's gzip first (3.7 of ~12 CPU s on the 1M-record bench file): the check runs only when reading failed
    from transforms.ingest.parse import vcf

    def refuse(path: Path, *, file: str) -> None:
        raise AssertionError(f"{file} decompressed by Python before the reader")

    monkeypatch.setattr(vcf, "check_readable", refuse)
    path = tmp_path / "calls.vcf.gz"
    path.write_bytes(gzip.compress(_vcf(shared_data, "vcf2maf_test_b38_input.vcf").read_bytes()))
    assert parse_vcf(path, issues=IssueLog("t"), sample="TUMOR").records.collect().height == 25  # grep -vc '^#'


@pytest.mark.parametrize("sample", ["TUMOR", "NOPE"])
@pytest.mark.parametrize("damage", ["cut", "crc"])
def test_parse_vcf_broken_gzip_stream_is_located_before_any_other_error(shared_data: Path, tmp_path: Path,
                                                                         damage: str, sample: str) -> None:
    # a stream cut in the records, or whole but with a wrong CRC-32: 'corrupt_file' at the first line the stream
    # does not hold whole, also when the sample is not in the file (as when the whole file was checked first)
    text = _vcf(shared_data, "vcf2maf_test_b38_input.vcf").read_bytes()  # 31 lines (wc -l), 6 of them header
    data = gzip.compress(text)
    if damage == "cut":
        data = data[: len(data) * 3 // 4]
        held = zlib.decompressobj(wbits=31).decompress(data)  # what zlib gets out of the cut stream
        expected = held.count(b"\n") + 1
        assert 6 < expected < 31
    else:
        data = data[:-8] + bytes([data[-8] ^ 1]) + data[-7:]  # the trailer: CRC-32, then the length
        expected = 32  # all 31 lines decompress before the CRC-32 is checked
    path = tmp_path / "calls.vcf.gz"
    path.write_bytes(data)
    with pytest.raises(InputError) as caught:
        parse_vcf(path, issues=IssueLog("t"), sample=sample)
    assert (caught.value.issue.code, caught.value.issue.line) == ("corrupt_file", expected)


def test_parse_vcf_gzip_padded_with_zeros_reads_as_unpadded(shared_data: Path, tmp_path: Path) -> None:
    # Python's gzip (and gzip -d) skip zero bytes after the last member; polars' reader rejects them, which was a
    # bare OSError out of parse_vcf: the file now goes to the other reader like any file the fast path refuses
    text = _vcf(shared_data, "vcf2maf_test_b38_input.vcf").read_bytes()
    plain, padded = tmp_path / "plain.vcf.gz", tmp_path / "padded.vcf.gz"
    plain.write_bytes(gzip.compress(text))
    padded.write_bytes(gzip.compress(text) + bytes(64))
    frames = [parse_vcf(p, issues=IssueLog("t"), sample="TUMOR").records.collect() for p in (plain, padded)]
    assert frames[0].height == 25
    assert_frame_equal(frames[0], frames[1])


def test_parse_vcf_reads_without_pandas_and_oxbow_still_imports(shared_data: Path) -> None:
    # a fresh interpreter: parse_vcf loads only oxbow's scanner; a later `import oxbow` must still work
    code = (
        "import sys; from pathlib import Path; from transforms.issues import IssueLog; "
        "from transforms.ingest.parse.vcf import parse_vcf; "
        f"n = parse_vcf(Path({str(_vcf(shared_data, 'vcf2maf_test_b38_input.vcf'))!r}), issues=IssueLog('t'), "
        "sample='TUMOR').records.collect().height; "
        "print(n, 'pandas' in sys.modules); import oxbow; "
        "print(oxbow.from_vcf(sys.argv[1], info_fields=None, batch_size=100).to_polars().height)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(_vcf(shared_data, "vcf2maf_test_b38_input.vcf"))],
                            capture_output=True, text=True, check=True, cwd=Path(__file__).parents[3])
    assert result.stdout.split() == ["25", "False", "25"]  # grep -vc '^#': 25 records


def test_parse_vcf_multiallelic_without_allele_subfields(tmp_path: Path) -> None:
    # a CSQ without Allele or ALLELE_NUM (as VEP 81's in the cyvcf2 file): each annotation describes every alt;
    # an ALT '.' record (no alt allele) is counted as skipped. Both used to end in a polars ShapeError.
    path = tmp_path / "noallele.vcf"
    path.write_text(
        "##fileformat=VCFv4.2\n"
        '##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. '
        'Format: Consequence|SYMBOL|Feature|BIOTYPE">\n'
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
        "1\t100\t.\tC\tT,A\t50\tPASS\tCSQ=intron_variant|G2|ENST2|protein_coding,"
        "missense_variant|G1|ENST1|protein_coding\tGT\t1/2\n"
        "1\t200\t.\tG\t.\t50\tPASS\tCSQ=intron_variant|G2|ENST2|protein_coding\tGT\t0/0\n"
    )
    parsed = parse_vcf(path, issues=IssueLog("t"))
    frame = parsed.records.collect()
    # missense (SO rank above intron) is chosen for both alts of line 5; line 6 has no alt to report
    assert frame.select("line", "alt", "consequence", "feature_id", "transcript_id").rows() == [
        (5, "T", "missense_variant", "G1", "ENST1"), (5, "A", "missense_variant", "G1", "ENST1")]
    assert (parsed.metadata["records"], parsed.metadata["genotypes_hom_ref"]) == (2, 1)


def _edge_case_vcf(shared_data: Path, path: Path) -> Path:
    """The haploid-X file with the edges of the text fast path written into its records (one edit per line)."""
    lines = _vcf(shared_data, "cyvcf2_test-haploidX_VEP81_CSQ_3samples.vcf").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if not line.startswith("#"))

    def edit(offset: int, column: int, value: str) -> None:
        fields = lines[first + offset].split("\t")
        fields[column] = value
        lines[first + offset] = "\t".join(fields)

    for offset in range(1, 60, 3):  # FORMAT order varying per record: DP:PL:GT:AD, the values moved alike
        fields = lines[first + offset].split("\t")
        if fields[8] == "GT:AD:DP:GQ:PL":
            fields[8] = "DP:PL:GT:AD"
            for j in range(9, len(fields)):
                v = fields[j].split(":") + ["."] * 5
                fields[j] = ":".join([v[2], v[4], v[0], v[1]])
            lines[first + offset] = "\t".join(fields)
    edit(2, 9, "1")  # a sample with fewer fields than FORMAT
    edit(3, 4, ".")  # no alt allele
    edit(5, 4, "A,*,C")  # multi-allelic with a spanning deletion
    edit(6, 6, "q10;LowQual")
    edit(8, 6, ".")
    edit(9, 7, "DB;" + lines[first + 9].split("\t")[7] + ";SOMATIC")  # INFO flags around the CSQ
    edit(11, 7, "AC=1;CSQ=.")
    edit(12, 7, "AC=1")  # no CSQ
    edit(14, 9, "0|1:1,3:4:99:1,0")
    edit(15, 10, "./.:.:.:.:.")
    info = lines[first + 17].split("\t")[7]
    assert "|ARSD|" in info
    edit(17, 7, info.replace("|ARSD|", "|AR%3BSD%3D%3A%253D|"))  # percent-encodings oxbow decodes: AR;SD=:%3D
    edit(20, 7, lines[first + 20].split("\t")[7]  # the key twice: oxbow keeps the last
         + ";CSQ=missense_variant|||ENSG00000000003|TSPAN6|ENST00000373020|||||protein_coding")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("sample", [None, "37165"])
def test_parse_vcf_text_reader_matches_oxbow(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             sample: str | None) -> None:
    # polars' CSV reader (the fast path) and oxbow (the reference, the reader before it) on the same records:
    # the same rows, metadata and issues, plain and gzipped
    from transforms.ingest.parse import vcf

    plain = _edge_case_vcf(shared_data, tmp_path / "edges.vcf")
    zipped = tmp_path / "edges.vcf.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    oxbow_calls = []
    batches = vcf._batches
    monkeypatch.setattr(vcf, "_batches", lambda *a, **k: oxbow_calls.append(1) or batches(*a, **k))

    def parse(path: Path) -> tuple[pl.DataFrame, dict[str, object], list[str]]:
        issues = IssueLog("t")
        parsed = parse_vcf(path, issues=issues, sample=sample)
        return parsed.records.collect(), parsed.metadata, [str(i) for i in issues.issues]

    fast = [parse(plain), parse(zipped)]
    assert oxbow_calls == []  # the fast path read both: nothing in them sent it to oxbow

    def refuse(*args: object, **kwargs: object) -> None:
        raise vcf._NotPlain("the test reads with oxbow")

    monkeypatch.setattr(vcf, "_text_batches", refuse)
    for got, path in zip(fast, (plain, zipped), strict=True):
        expected = parse(path)
        assert oxbow_calls
        assert got[0].height > 100
        assert_frame_equal(got[0], expected[0])
        assert got[1:] == expected[1:]


def test_parse_vcf_irregular_record_is_read_by_oxbow(shared_data: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # a line the fast path cannot read as oxbow would (a short line, a non-integer AD) goes to oxbow, which
    # locates it; the fast path's batches before it are not kept twice
    from transforms.ingest.parse import vcf

    lines = _vcf(shared_data, "vcf2maf_test_b38_input.vcf").read_text().splitlines()
    lines[12] = lines[12][:15]  # line 13 cut mid-record
    path = tmp_path / "trunc.vcf"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(vcf, "BATCH_SIZE", 4)  # the fast path has given 3 batches before line 13
    issues = IssueLog("t")
    frame = parse_vcf(path, issues=issues, sample="TUMOR").records.collect()
    assert frame["line"].to_list() == [*range(7, 13), *range(14, 32)]  # 25 records, 6 header lines
    assert [(i.code, i.line) for i in issues.issues] == [("bad_record", 13)]


def test_parse_vcf_non_integer_format_value_is_a_located_error_without_a_backtrace(
        shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # oxbow rejects the file with "Error processing field 'AD'" and no line (plus a Rust backtrace when
    # RUST_BACKTRACE is set); the fast path has found the value and says where
    from transforms.ingest.parse import vcf

    lines = _vcf(shared_data, "vcf2maf_test_b38_input.vcf").read_text().splitlines()
    fields = lines[19].split("\t")  # line 20, the 14th record: its TUMOR sample's AD
    keys, values = fields[8].split(":"), fields[9].split(":")
    values[keys.index("AD")] = "12,x"
    fields[9] = ":".join(values)
    lines[19] = "\t".join(fields)
    path = tmp_path / "bad_ad.vcf"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(vcf, "BATCH_SIZE", 4)  # in the fast path's fourth batch
    monkeypatch.setenv("RUST_BACKTRACE", "1")
    with pytest.raises(InputError) as raised:
        parse_vcf(path, issues=IssueLog("t"), sample="TUMOR")
    issue = raised.value.issue
    assert (issue.file, issue.code, issue.line, issue.column) == ("bad_ad.vcf", "bad_value", 20, "TUMOR")
    assert "'12,x'" in issue.message
    assert "backtrace" not in str(raised.value).lower()


def test_parse_vcf_percent_encoded_comma_and_a_plus_signed_value_are_read_as_oxbow_reads_them(
        shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # %2C inside an annotation is decoded by oxbow after it splits the list: the fast path hands the file over;
    # a DP of '+7' (oxbow reads 7) beside a truncated record: the record is dropped and located, the file loads
    from transforms.ingest.parse import vcf

    lines = _vcf(shared_data, "cyvcf2_test-haploidX_VEP81_CSQ_3samples.vcf").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    fields = lines[first + 17].split("\t")
    fields[7] = fields[7].replace("|ARSD|", "|AR%2CSD|")
    lines[first + 17] = "\t".join(fields)
    fields = lines[first + 4].split("\t")
    keys, values = fields[8].split(":"), fields[9].split(":")
    values[keys.index("DP")] = "+7"
    fields[9] = ":".join(values)
    lines[first + 4] = "\t".join(fields)
    lines[first + 30] = lines[first + 30][:20]  # a truncated record
    path = tmp_path / "odd.vcf"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(vcf, "BATCH_SIZE", 8)
    issues = IssueLog("t")
    got = parse_vcf(path, issues=issues).records.collect()
    assert [(i.code, i.line) for i in issues.issues if i.severity == "error"] == [("bad_record", first + 31)]

    def refuse(*args: object, **kwargs: object) -> None:
        raise vcf._NotPlain("the test reads with oxbow")

    monkeypatch.setattr(vcf, "_text_batches", refuse)
    expected_issues = IssueLog("t")
    assert_frame_equal(got, parse_vcf(path, issues=expected_issues).records.collect())
    assert [str(i) for i in issues.issues] == [str(i) for i in expected_issues.issues]
    assert set(got.filter(pl.col("line") == first + 18)["feature_id"]) == {"AR,SD"}  # decoded


def _refuse_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from transforms.ingest.parse import vcf

    def refuse(*args: object, **kwargs: object) -> None:
        raise vcf._NotPlain("the test reads with oxbow")

    monkeypatch.setattr(vcf, "_text_batches", refuse)


@pytest.mark.parametrize("reader", ["fast", "oxbow"])
def test_parse_vcf_annotation_declared_number_1_reads_as_a_list(shared_data: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    # '##INFO=<ID=CSQ,Number=1,...>' instead of 'Number=.': oxbow gives the whole comma-separated list as one
    # string (it failed with "`explode` operation not supported for dtype `str`"); both readers must give the
    # rows of the file as published
    source = _vcf(shared_data, "cyvcf2_test-haploidX_VEP81_CSQ_3samples.vcf")
    text = source.read_text()
    assert text.count("##INFO=<ID=CSQ,Number=.,") == 1
    edited = tmp_path / "number1.vcf"
    edited.write_text(text.replace("##INFO=<ID=CSQ,Number=.,", "##INFO=<ID=CSQ,Number=1,"))
    expected_issues = IssueLog("t")
    expected = parse_vcf(source, issues=expected_issues)
    if reader == "oxbow":
        _refuse_fast_path(monkeypatch)
    issues = IssueLog("t")
    got = parse_vcf(edited, issues=issues)
    frame = got.records.collect()
    assert frame.height > 400
    assert frame["transcript_id"].null_count() < frame.height
    assert_frame_equal(frame, expected.records.collect())
    assert got.metadata == expected.metadata
    assert [str(i) for i in issues.issues] == [str(i) for i in expected_issues.issues]


def test_parse_vcf_annotation_declared_number_1_keeps_an_encoded_comma_inside_a_field(shared_data: Path,
                                                                                      tmp_path: Path) -> None:
    # oxbow percent-decodes a Number=1 annotation string before it is cut into annotations, so a gene symbol
    # written 'AR%2CSD' looked like two annotations: 'AR' ended one (its transcript lost) and 'SD' was reported as
    # an unknown consequence. The file as published ('Number=.') is the reference.
    lines = _vcf(shared_data, "cyvcf2_test-haploidX_VEP81_CSQ_3samples.vcf").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    fields = lines[first + 17].split("\t")
    assert "|ARSD|" in fields[7]
    fields[7] = fields[7].replace("|ARSD|", "|AR%2CSD|")
    lines[first + 17] = "\t".join(fields)
    published, declared_1 = tmp_path / "published.vcf", tmp_path / "number1.vcf"
    published.write_text("\n".join(lines) + "\n")
    declared_1.write_text(published.read_text().replace("##INFO=<ID=CSQ,Number=.,", "##INFO=<ID=CSQ,Number=1,"))
    expected_issues, issues = IssueLog("t"), IssueLog("t")
    expected = parse_vcf(published, issues=expected_issues).records.collect()
    got = parse_vcf(declared_1, issues=issues).records.collect()
    row = got.filter(pl.col("line") == first + 18)
    assert set(row["feature_id"]) == {"AR,SD"}
    assert set(row["transcript_id"]) == {"ENST00000381154"}
    assert_frame_equal(got, expected)
    assert [str(i) for i in issues.issues] == [str(i) for i in expected_issues.issues]


@pytest.mark.parametrize("reader", ["fast", "oxbow"])
def test_parse_vcf_percent_encoded_equals_sign_in_hgvsp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        reader: str) -> None:
    # VEP writes a synonymous HGVSp 'p.Ser60=' as 'p.Ser60%3D' (VCF percent-encoding); both readers decode it.
    # '%253D' is the encoded text '%3D' itself (%25 = '%'): kept as written, not turned into '=' afterwards
    path = tmp_path / "pct.vcf"
    path.write_text(
        "##fileformat=VCFv4.2\n"
        '##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. '
        'Format: Allele|Consequence|IMPACT|SYMBOL|Gene|Feature|BIOTYPE|CANONICAL|HGVSp">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        "1\t100\t.\tC\tT\t50\tPASS\tCSQ=T|synonymous_variant|LOW|A|ENSGA|ENSTA|protein_coding|YES|ENSPA:p.Ser60%3D\n"
        "1\t200\t.\tC\tT\t50\tPASS\tCSQ=T|synonymous_variant|LOW|A|ENSGA|ENSTA|protein_coding|YES|ENSPA:p.Ser61%253D\n"
    )
    if reader == "oxbow":
        _refuse_fast_path(monkeypatch)
    frame = parse_vcf(path, issues=IssueLog("t"), sample="S").records.collect()
    assert frame["protein_change"].to_list() == ["p.S60=", "p.S61%3D"]


def _csq(*annotations: str) -> str:
    return "CSQ=" + ",".join(annotations)


def _csq_vcf(path: Path, records: list[tuple[str, str]]) -> Path:
    """A sites-only VEP VCF (subfields Allele to CANONICAL, then HGVSp): one record per (ALT, INFO), at 100, 200, ..."""
    path.write_text(
        "##fileformat=VCFv4.2\n"
        '##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. '
        'Format: Allele|Consequence|IMPACT|SYMBOL|Gene|Feature|BIOTYPE|CANONICAL|HGVSp">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        + "".join(f"1\t{100 * (i + 1)}\t.\tC\t{alt}\t50\tPASS\t{info}\n" for i, (alt, info) in enumerate(records))
    )
    return path


def test_parse_vcf_one_canonical_annotation_and_rankings_in_one_batch(tmp_path: Path) -> None:
    # an allele with one CANONICAL annotation takes it without ranking; with none or several, severity then
    # protein_coding then the first listed decide; unknown terms are reported from every annotation, chosen or not.
    # Expected transcripts by hand from the rule (transforms.layers.variants.CONSEQUENCE_RULE).
    records = [
        ("T", _csq("T|stop_gained|HIGH|A|GA|T1|protein_coding||",
                   "T|intron_variant|MODIFIER|A|GA|T2|protein_coding|YES|",
                   "T|brand_new_term|MODIFIER|A|GA|T3|protein_coding||")),  # one CANONICAL: T2
        ("T", _csq("T|intron_variant|MODIFIER|B|GB|T4|protein_coding|YES|",
                   "T|missense_variant|MODERATE|B|GB|T5|lncRNA|YES|")),  # two: the more severe, T5
        ("T", _csq("T|downstream_gene_variant|MODIFIER|C|GC|T6|protein_coding||",
                   "T|missense_variant|MODERATE|C|GC|T7|lncRNA||",
                   "T|missense_variant|MODERATE|C|GC|T8|protein_coding||")),  # none: missense, protein_coding: T8
        ("T,G", _csq("T|intron_variant|MODIFIER|D|GD|T9|protein_coding|YES|",
                     "T|stop_gained|HIGH|D|GD|T10|protein_coding||",
                     "G|synonymous_variant|LOW|D|GD|T11|protein_coding||",
                     "G|missense_variant|MODERATE|D|GD|T12|protein_coding||")),  # T: T9; G: T12
        ("T", _csq("T|upstream_gene_variant|MODIFIER|E|GE|T13|protein_coding||")),  # one annotation: T13
    ]
    path = _csq_vcf(tmp_path / "rank.vcf", records)
    issues = IssueLog("t")
    frame = parse_vcf(path, issues=issues, sample="S").records.collect()
    assert frame.select("position", "alt", "transcript_id").rows() == [
        (100, "T", "T2"), (200, "T", "T5"), (300, "T", "T8"), (400, "T", "T9"), (400, "G", "T12"), (500, "T", "T13")]
    assert frame["consequence"].to_list() == ["intron_variant", "missense_variant", "missense_variant",
                                              "intron_variant", "missense_variant", "upstream_gene_variant"]
    assert [(i.code, i.message.rsplit(": ", 1)[-1]) for i in issues.issues] == [
        ("unknown_consequence", "brand_new_term")]


@pytest.mark.parametrize("reader", ["fast", "oxbow"])
def test_parse_vcf_calls_alleles_and_chosen_annotation_put_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    reader: str) -> None:
    # each call finds its allele, site and chosen annotation by position in the batch: a genotype naming an alt the
    # record does not have (3 of 2 alts), a carried '*' or an ALT '.' gives no row; an annotation whose ALLELE_NUM
    # is past the alts (5) is not used; rows come by record, then sample label as sorted text (B before a), then
    # alt (a GT '2/1' lists alt 2 first). Expected rows by hand from the lines below (header: lines 1-5).
    path = tmp_path / "put.vcf"
    path.write_text(
        "##fileformat=VCFv4.2\n"
        '##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. '
        'Format: Allele|Consequence|IMPACT|SYMBOL|Gene|Feature|BIOTYPE|CANONICAL|ALLELE_NUM">\n'
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tB\n"
        "1\t100\t.\tC\tT,G\t50\tPASS\tCSQ=T|missense_variant|MODERATE|X|GX|TX1|protein_coding|YES|1,"
        "G|stop_gained|HIGH|X|GX|TX2|protein_coding|YES|2,G|intron_variant|MODIFIER|X|GX|TX3|protein_coding||5"
        "\tGT:AD\t2/1:2,3,5\t0/3:4,1,1\n"
        "1\t200\t.\tA\t.\t50\tPASS\tCSQ=A|intron_variant|MODIFIER|Y|GY|TY1|protein_coding|YES|\tGT:AD\t0/1:1,1\t1:2\n"
        "1\t300\t.\tG\tA,*\t50\tq10\tCSQ=A|synonymous_variant|LOW|Z|GZ|TZ1|protein_coding|YES|1\tGT:AD"
        "\t1/2:3,4,3\t2/2:0,0,6\n"
        "1\t400\t.\tT\tC\t50\tPASS\t.\tGT:AD\t0/1:6,4\t1/1:0,5\n"
    )
    if reader == "oxbow":
        _refuse_fast_path(monkeypatch)
    parsed = parse_vcf(path, issues=IssueLog("t"))
    frame = parsed.records.collect()
    assert frame.select("line", "column", "alt", "filter", "transcript_id", "consequence", "vaf").rows() == [
        (6, "a", "T", "PASS", "TX1", "missense_variant", 0.3),  # AD 2,3,5: 3 / 10
        (6, "a", "G", "PASS", "TX2", "stop_gained", 0.5),
        (8, "a", "A", "q10", "TZ1", "synonymous_variant", 0.4),  # alt 2 is '*'
        (9, "B", "C", "PASS", None, None, 1.0),  # INFO '.': no annotation
        (9, "a", "C", "PASS", None, None, 0.4),
    ]
    assert (parsed.metadata["records"], parsed.metadata["alleles_skipped"]) == (4, 1)  # the '*' (ALT '.': no alt)


@pytest.mark.parametrize("reader", ["fast", "oxbow"])
def test_parse_vcf_chosen_annotation_reported_from_the_right_string_when_yes_is_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    # the chosen annotations' subfields are cut from the CANONICAL candidates (annotations containing 'YES') where
    # the chosen one is among them, else from the whole text: candidates that are not CANONICAL ('YES' as SYMBOL
    # or in HGVSp), chosen ones that are not candidates, and both in one batch, in an order that is not the
    # annotations' (alleles decided by their one CANONICAL annotation come first in the choice). Expected
    # (transcript, symbol, protein change) by hand from CONSEQUENCE_RULE.
    records = [
        ("T", _csq("T|intron_variant|MODIFIER|A|GA|T1|protein_coding||",
                   "T|missense_variant|MODERATE|YES|GB|T2|protein_coding||p.Arg2His")),  # no CANONICAL: T2
        ("T", _csq("T|stop_gained|HIGH|C|GC|T3|protein_coding||p.Gln3Ter",
                   "T|intron_variant|MODIFIER|D|GD|T4|protein_coding|YES|")),  # one CANONICAL: T4
        ("T", _csq("T|synonymous_variant|LOW|E|GE|T5|protein_coding||p.YES5=",
                   "T|upstream_gene_variant|MODIFIER|F|GF|T6|protein_coding||")),  # no CANONICAL: T5
        ("T,G", _csq("T|intron_variant|MODIFIER|G|GG|T7|protein_coding||",
                     "G|missense_variant|MODERATE|H|GH|T8|protein_coding|YES|p.Gly8Ala",
                     "G|stop_gained|HIGH|YES|GI|T9|protein_coding||")),  # T: T7; G: T8 (CANONICAL first)
        ("T", _csq("T|missense_variant|MODERATE|J|GJ|T10|protein_coding|YES|p.Ala10Val")),  # one CANONICAL: T10
        ("T", _csq("T|downstream_gene_variant|MODIFIER|K|GK|T11|lncRNA||")),  # one annotation, no YES: T11
    ]
    path = _csq_vcf(tmp_path / "chosen.vcf", records)
    if reader == "oxbow":
        _refuse_fast_path(monkeypatch)
    frame = parse_vcf(path, issues=IssueLog("t"), sample="S").records.collect()
    assert frame.select("position", "alt", "transcript_id", "feature_id", "protein_change").rows() == [
        (100, "T", "T2", "YES", "p.R2H"), (200, "T", "T4", "D", None), (300, "T", "T5", "E", "p.YES5="),
        (400, "T", "T7", "G", None), (400, "G", "T8", "H", "p.G8A"), (500, "T", "T10", "J", "p.A10V"),
        (600, "T", "T11", "K", None)]
