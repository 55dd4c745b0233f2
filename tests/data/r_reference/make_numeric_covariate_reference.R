# DESeq2 reference for a numeric covariate fitted as one slope: pasilla, design ~ rin + condition.
# Usage: Rscript tests/data/r_reference/make_numeric_covariate_reference.R tests/data
# Writes pasilla_de_numeric_covariate.tsv.gz next to this script (see README.md). R is needed only to regenerate
# it, never by the product or the tests.
suppressPackageStartupMessages(library(DESeq2))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) stop("usage: Rscript make_numeric_covariate_reference.R <test data dir>")
data_dir <- args[[1]]
script_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
out_dir <- dirname(normalizePath(sub("^--file=", "", script_arg)))

pasilla <- as.matrix(read.delim(file.path(data_dir, "rnaseq_pasilla/pasilla_gene_counts.tsv"),
                                row.names = "gene_id", check.names = FALSE))
annotation <- read.csv(file.path(data_dir, "rnaseq_pasilla/pasilla_sample_annotation.csv"))
rownames(annotation) <- sub("fb$", "", annotation$file)
coldata <- annotation[colnames(pasilla), "condition", drop = FALSE]
coldata$condition <- factor(coldata$condition, levels = c("untreated", "treated"))
# A made-up RNA integrity number per sample (not in the pasilla data): 7 distinct values, not collinear with
# condition, numeric (not a factor) so that DESeq2 fits it as one slope, uncentred.
rin <- c(untreated1 = 7.9, untreated2 = 8.6, untreated3 = 6.8, untreated4 = 9.1,
         treated1 = 7.2, treated2 = 8.3, treated3 = 6.5)
coldata$rin <- unname(rin[rownames(coldata)])
stopifnot(!anyNA(coldata$rin))

dds <- DESeq(DESeqDataSetFromMatrix(pasilla, coldata, design = ~ rin + condition), quiet = TRUE)
res <- results(dds, contrast = c("condition", "treated", "untreated"))
out <- data.frame(feature_id = rownames(res), base_mean = res$baseMean, log2_fold_change = res$log2FoldChange,
                  lfc_se = res$lfcSE, stat = res$stat, pvalue = res$pvalue, padj = res$padj,
                  stringsAsFactors = FALSE)
for (col in names(out)) if (is.double(out[[col]])) out[[col]] <- sprintf("%.17g", out[[col]])
path <- file.path(out_dir, "pasilla_de_numeric_covariate.tsv.gz")
con <- gzfile(path, "w")
write.table(out, con, sep = "\t", quote = FALSE, row.names = FALSE, na = "NA")
close(con)
message("wrote ", path, " (", nrow(out), " rows); rin slope coefficient named ", resultsNames(dds)[2])
message("DESeq2 ", packageVersion("DESeq2"), ", ", R.version.string)
