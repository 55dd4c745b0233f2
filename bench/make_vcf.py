"""Generate a bgzipped one-sample VEP-annotated VCF for the VCF parsing benchmark.

Realistic shape, not realistic biology: the ``CSQ`` Format is the 90-subfield one of the real bcftools
``split-vep`` test file (VEP with gnomAD, CADD and LoF plugins), 3-5 transcripts per record with one CANONICAL,
~2 % multi-allelic records (two alts, VEP ``Allele`` trimmed as VEP writes it, ``ALLELE_NUM`` set), ~10 % indels,
GT:AD:DP for one sample. Deterministic (seeded), so every run benchmarks the same file.

Usage: ``python bench/make_vcf.py [OUT.vcf.gz] [N_RECORDS]`` (needs ``bgzip`` from Debian ``tabix``).
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

CSQ_FORMAT = (
    "Allele|Consequence|IMPACT|SYMBOL|Gene|Feature_type|Feature|BIOTYPE|EXON|INTRON|HGVSc|HGVSp|cDNA_position|"
    "CDS_position|Protein_position|Amino_acids|Codons|Existing_variation|ALLELE_NUM|DISTANCE|STRAND|FLAGS|"
    "VARIANT_CLASS|SYMBOL_SOURCE|HGNC_ID|CANONICAL|TSL|APPRIS|CCDS|ENSP|SWISSPROT|TREMBL|UNIPARC|SOURCE|GENE_PHENO|"
    "SIFT|PolyPhen|DOMAINS|miRNA|HGVS_OFFSET|AF|AFR_AF|AMR_AF|EAS_AF|EUR_AF|SAS_AF|AA_AF|EA_AF|gnomAD_AF|"
    "gnomAD_AFR_AF|gnomAD_AMR_AF|gnomAD_ASJ_AF|gnomAD_EAS_AF|gnomAD_FIN_AF|gnomAD_NFE_AF|gnomAD_OTH_AF|"
    "gnomAD_SAS_AF|MAX_AF|MAX_AF_POPS|CLIN_SIG|SOMATIC|PHENO|PUBMED|MOTIF_NAME|MOTIF_POS|HIGH_INF_POS|"
    "MOTIF_SCORE_CHANGE|LoF|LoF_filter|LoF_flags|LoF_info|CADD_PHRED|CADD_RAW|gnomAD2.1|gnomAD2.1_AF_raw|"
    "gnomAD2.1_AF_popmax|gnomAD2.1_AF_afr|gnomAD2.1_AF_amr|gnomAD2.1_AF_asj|gnomAD2.1_AF_eas|gnomAD2.1_AF_fin|"
    "gnomAD2.1_AF_nfe|gnomAD2.1_AF_oth|gnomAD2.1_AF_sas"
)
N_FIELDS = CSQ_FORMAT.count("|") + 1

# (consequence, impact, weight): roughly the mix of a whole-exome call set
CONSEQUENCES = [
    ("intron_variant", "MODIFIER", 30),
    ("missense_variant", "MODERATE", 12),
    ("synonymous_variant", "LOW", 10),
    ("upstream_gene_variant", "MODIFIER", 10),
    ("downstream_gene_variant", "MODIFIER", 10),
    ("3_prime_UTR_variant", "MODIFIER", 6),
    ("5_prime_UTR_variant", "MODIFIER", 3),
    ("non_coding_transcript_exon_variant", "MODIFIER", 6),
    ("intron_variant&non_coding_transcript_variant", "MODIFIER", 5),
    ("splice_region_variant&intron_variant", "LOW", 3),
    ("missense_variant&splice_region_variant", "MODERATE", 1),
    ("stop_gained", "HIGH", 1),
    ("frameshift_variant", "HIGH", 1),
    ("splice_donor_variant", "HIGH", 1),
    ("inframe_deletion", "MODERATE", 1),
]
BIOTYPES = ["protein_coding"] * 6 + ["processed_transcript", "retained_intron", "nonsense_mediated_decay", "lncRNA"]
AMINO = "ACDEFGHIKLMNPQRSTVWY"
BASES = "ACGT"


def _csq(rng: random.Random, allele: str, allele_num: int, gene: int, symbol: str, variant_class: str) -> list[str]:
    cons = rng.choices(CONSEQUENCES, weights=[w for _, _, w in CONSEQUENCES], k=rng.randint(3, 5))
    canonical = rng.randrange(len(cons))
    out = []
    for i, (consequence, impact, _) in enumerate(cons):
        fields = [""] * N_FIELDS
        transcript = f"ENST{gene * 10 + i:011d}"
        coding = "missense" in consequence or "stop" in consequence or "synonymous" in consequence
        pos = rng.randint(1, 900)
        aa = rng.choice(AMINO)
        fields[0:8] = [
            allele,
            consequence,
            impact,
            symbol,
            f"ENSG{gene:011d}",
            "Transcript",
            transcript,
            "protein_coding" if coding else rng.choice(BIOTYPES),
        ]
        fields[8] = f"{rng.randint(1, 12)}/12" if coding else ""
        fields[10] = f"{transcript}.1:c.{pos * 3}{allele}"
        fields[11] = f"ENSP{gene * 10 + i:011d}.1:p.{aa}{pos}{rng.choice(AMINO)}" if coding else ""
        fields[18] = str(allele_num)
        fields[20] = rng.choice(("1", "-1"))
        fields[22] = variant_class
        fields[23:26] = ["HGNC", f"HGNC:{gene % 50000}", "YES" if i == canonical else ""]
        fields[36] = "benign(0.01)" if coding else ""
        fields[48] = f"{rng.random() / 100:.3g}"
        fields[71] = f"{rng.random() * 30:.3f}"
        out.append("|".join(fields))
    return out


def _vep_allele(ref: str, alt: str, alts: list[str]) -> str:
    is_indel = any(len(a) != len(ref) for a in alts)
    if is_indel and len({ref[0], *(a[0] for a in alts)}) == 1:
        return alt[1:] or "-"
    return alt


def make_vcf(out: Path, n_records: int, *, seed: int = 1) -> None:
    """Write ``n_records`` records to a bgzipped VCF at ``out``."""
    rng = random.Random(seed)
    header = [
        "##fileformat=VCFv4.2",
        *(f"##contig=<ID={c}>" for c in range(1, 23)),
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">',
        f'##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. '
        f'Format: {CSQ_FORMAT}">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tSAMPLE1",
    ]
    per_chrom = n_records // 22 + 1
    with open(out, "wb") as fh:
        bgzip = subprocess.Popen(["bgzip", "-c", "-@", "2"], stdin=subprocess.PIPE, stdout=fh)
        assert bgzip.stdin is not None
        write = bgzip.stdin.write
        write(("\n".join(header) + "\n").encode())
        lines: list[str] = []
        for n in range(n_records):
            chrom = n // per_chrom + 1
            pos = (n % per_chrom) * 100 + rng.randint(1, 99)
            ref = rng.choice(BASES)
            kind = rng.random()
            if kind < 0.05:
                alts = [ref + "".join(rng.choices(BASES, k=rng.randint(1, 4)))]
                variant_class = "insertion"
            elif kind < 0.10:
                ref += "".join(rng.choices(BASES, k=rng.randint(1, 4)))
                alts = [ref[0]]
                variant_class = "deletion"
            else:
                alts = [rng.choice([b for b in BASES if b != ref])]
                variant_class = "SNV"
            if rng.random() < 0.02:
                alts.append(rng.choice([b for b in BASES if b != ref[0] and b not in alts]) + ref[1:])
            gene = rng.randint(1, 20000)
            csq = []
            for k, alt in enumerate(alts, start=1):
                csq += _csq(rng, _vep_allele(ref, alt, alts), k, gene, f"GENE{gene}", variant_class)
            depth = rng.randint(10, 200)
            alt_reads = rng.randint(1, depth)
            ad = [depth - alt_reads, alt_reads] + [0] * (len(alts) - 1)
            gt = "1/1" if alt_reads == depth else "0/1"
            lines.append(
                f"{chrom}\t{pos}\t.\t{ref}\t{','.join(alts)}\t{rng.randint(20, 3000)}\tPASS\t"
                f"CSQ={','.join(csq)}\tGT:AD:DP\t{gt}:{','.join(map(str, ad))}:{depth}"
            )
            if len(lines) == 10_000:
                write(("\n".join(lines) + "\n").encode())
                lines.clear()
        if lines:
            write(("\n".join(lines) + "\n").encode())
        bgzip.stdin.close()
        bgzip.wait()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out" / "vep_1m.vcf.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    make_vcf(target, int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
    print(target)
