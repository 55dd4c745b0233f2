import pytest
from pydantic import ValidationError

from schemas.manifest import Assay


def test_assay_rejects_a_measure_the_tool_output_lacks():
    # Salmon quant.sf has NumReads and TPM only: an fpkm measure used to crash the Salmon parser with ValueError
    with pytest.raises(ValidationError, match="salmon output holds no 'fpkm' column"):
        Assay(name="a", kind="rna_abundance", format="salmon", path="*/quant.sf", measure="fpkm")


def test_assay_accepts_the_measures_rsem_writes():
    for measure in (None, "tpm", "fpkm", "counts"):
        Assay(name="a", kind="rna_abundance", format="rsem", path="*.genes.results", measure=measure)
    # the measure of a count assay is not read
    Assay(name="c", kind="rna_counts", format="salmon", path="*/quant.sf", measure="fpkm")
