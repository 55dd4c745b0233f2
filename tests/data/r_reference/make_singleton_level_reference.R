# DESeq2 reference for a factor level with one sample: pasilla, two designs with a singleton level.
# Usage: Rscript tests/data/r_reference/make_singleton_level_reference.R tests/data
# Writes pasilla_de_singleton.tsv.gz next to this script (see README.md). R is needed only to regenerate it, never
# by the product or the tests.
#   one_treated:    untreated1-4 and treated1 only, ~ condition, treated vs untreated: the test level has one
#                   sample (2 coefficients, 3 residual df; dispersions come from the untreated replicates). With 3
#                   residual df DESeq2 draws its dispersion prior variance by Monte Carlo (set.seed(2)).
#   third_level:    all 7 samples, ~ group with group untreated (untreated1-4), treated (treated1, treated2) and
#                   treated_b (treated3 alone), treated vs untreated: a third, singleton level in the design
#                   (3 coefficients, 4 residual df).
#   singleton_test: the same fit, treated_b vs untreated: the singleton level is the one tested.
# Column disp_prior_var: attr(dispersionFunction(dds), "dispPriorVar") of the design's fit.
# DESeq2 1.38 fits both: the design has residual degrees of freedom (DESeq() refuses only m == p); no cell has
# minReplicatesForReplace = 7 samples, so no outlier replacement; Cook's distances count only the samples of
# levels with >= 3 replicates (the untreated ones).
suppressPackageStartupMessages(library(DESeq2))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) stop("usage: Rscript make_singleton_level_reference.R <test data dir>")
data_dir <- args[[1]]
script_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
out_dir <- dirname(normalizePath(sub("^--file=", "", script_arg)))

pasilla <- as.matrix(read.delim(file.path(data_dir, "rnaseq_pasilla/pasilla_gene_counts.tsv"),
                                row.names = "gene_id", check.names = FALSE))
annotation <- read.csv(file.path(data_dir, "rnaseq_pasilla/pasilla_sample_annotation.csv"))
rownames(annotation) <- sub("fb$", "", annotation$file)

fit <- function(samples, coldata, design) {
  DESeq(DESeqDataSetFromMatrix(pasilla[, samples], coldata, design = design), quiet = TRUE)
}
table <- function(design_name, dds, contrast) {
  res <- results(dds, contrast = contrast)
  design <- design(dds)
  coldata <- colData(dds)
  message(design_name, ": ", ncol(dds), " samples, ", ncol(model.matrix(design, coldata)), " coefficients; ",
          sum(res$padj < 0.05, na.rm = TRUE), " genes at padj < 0.05")
  data.frame(design = design_name, feature_id = rownames(res), base_mean = res$baseMean,
             log2_fold_change = res$log2FoldChange, lfc_se = res$lfcSE, stat = res$stat, pvalue = res$pvalue,
             padj = res$padj, disp_prior_var = attr(dispersionFunction(dds), "dispPriorVar"),
             stringsAsFactors = FALSE)
}

one <- c("untreated1", "untreated2", "untreated3", "untreated4", "treated1")
coldata_one <- data.frame(condition = factor(annotation[one, "condition"], levels = c("untreated", "treated")),
                          row.names = one)
all <- colnames(pasilla)
group <- ifelse(annotation[all, "condition"] == "untreated", "untreated",
                ifelse(all == "treated3", "treated_b", "treated"))
coldata_three <- data.frame(group = factor(group, levels = c("untreated", "treated", "treated_b")), row.names = all)

three <- fit(all, coldata_three, ~ group)
out <- rbind(table("one_treated", fit(one, coldata_one, ~ condition), c("condition", "treated", "untreated")),
             table("third_level", three, c("group", "treated", "untreated")),
             table("singleton_test", three, c("group", "treated_b", "untreated")))
for (col in names(out)) if (is.double(out[[col]])) out[[col]] <- sprintf("%.17g", out[[col]])
path <- file.path(out_dir, "pasilla_de_singleton.tsv.gz")
con <- gzfile(path, "w")
write.table(out, con, sep = "\t", quote = FALSE, row.names = FALSE, na = "NA")
close(con)
message("wrote ", path, " (", nrow(out), " rows)")
message("DESeq2 ", packageVersion("DESeq2"), ", ", R.version.string)
