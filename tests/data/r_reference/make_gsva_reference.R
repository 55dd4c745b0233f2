# GSVA ssGSEA reference scores (Barbie et al. 2009, un-normalised) on the vendored TCGA BRCA mRNA subset.
# Run from the repository root:  Rscript tests/data/r_reference/make_gsva_reference.R
# Debian 12 package r-bioc-gsva (GSVA 1.46.0; its API is gsva(expr, sets, method = "ssgsea", tau, ssgsea.norm),
# newer GSVA spells the same call gsva(ssgseaParam(expr, sets, alpha = 0.25, normalize = FALSE))).
suppressPackageStartupMessages(library(GSVA))

mrna <- read.delim("tests/data/tcga_brca_mixomics/train_mrna.tsv", check.names = FALSE, colClasses = c(sample_id = "character"))
expr <- t(as.matrix(mrna[, -1]))          # genes x samples, log2 values as given
colnames(expr) <- mrna$sample_id

lines <- strsplit(readLines("tests/data/genesets/h.all.v7.4.symbols.gmt"), "\t")
sets <- lapply(lines, function(x) x[-(1:2)])
names(sets) <- vapply(lines, `[`, "", 1)

# every Hallmark set with at least 5 of the 200 genes (min.sz counts members present in expr)
es <- gsva(expr, sets, method = "ssgsea", tau = 0.25, ssgsea.norm = FALSE, min.sz = 5, max.sz = Inf,
           verbose = FALSE)

out <- data.frame(gene_set = rep(rownames(es), times = ncol(es)), sample_id = rep(colnames(es), each = nrow(es)),
                  es = sprintf("%.17g", as.vector(es)))
write.table(out, "tests/data/r_reference/brca_ssgsea_gsva.tsv", sep = "\t", quote = FALSE, row.names = FALSE)
writeLines(capture.output(sessionInfo()), "tests/data/r_reference/sessionInfo_gsva.txt")
