# Reference figures from edgeR and DESeq2 for the numpy / pydeseq2 transforms.
# Usage: Rscript tests/data/r_reference/make_reference.R tests/data
# Writes tab-separated files next to this script; the long ones are gzipped.
# R is needed only to regenerate these files, never by the product or the tests.
suppressPackageStartupMessages({
  library(edgeR)
  library(DESeq2)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) stop("usage: Rscript make_reference.R <test data dir>")
data_dir <- args[[1]]
script_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
out_dir <- dirname(normalizePath(sub("^--file=", "", script_arg)))

# Full precision: 17 significant digits round-trip a double exactly.
fmt <- function(df) {
  for (col in names(df)) {
    if (is.double(df[[col]])) df[[col]] <- sprintf("%.17g", df[[col]])
  }
  df
}

write_tsv <- function(df, name, gzip = FALSE) {
  path <- file.path(out_dir, if (gzip) paste0(name, ".gz") else name)
  con <- if (gzip) gzfile(path, "w") else file(path, "w")
  write.table(fmt(df), con, sep = "\t", quote = FALSE, row.names = FALSE, na = "NA")
  close(con)
  message("wrote ", path, " (", nrow(df), " rows)")
}

# One row per gene and sample.
long <- function(mat, value) {
  data.frame(
    feature_id = rep(rownames(mat), times = ncol(mat)),
    sample_id = rep(colnames(mat), each = nrow(mat)),
    value = as.vector(mat),
    stringsAsFactors = FALSE
  ) |> setNames(c("feature_id", "sample_id", value))
}

# One row per sample: raw library size, edgeR TMM factor, DESeq2 median-of-ratios size factor.
sample_factors <- function(counts, integer_counts = round(counts)) {
  y <- calcNormFactors(DGEList(counts), method = "TMM")
  coldata <- data.frame(row.names = colnames(counts), one = rep(1, ncol(counts)))
  dds <- estimateSizeFactors(DESeqDataSetFromMatrix(integer_counts, coldata, design = ~1))
  data.frame(
    sample_id = colnames(counts),
    library_size = colSums(counts),
    tmm_factor = y$samples$norm.factors,
    size_factor = unname(sizeFactors(dds)),
    stringsAsFactors = FALSE
  )
}

de_table <- function(dds, contrast) {
  res <- results(dds, contrast = contrast)
  data.frame(
    feature_id = rownames(res),
    base_mean = res$baseMean,
    log2_fold_change = res$log2FoldChange,
    lfc_se = res$lfcSE,
    stat = res$stat,
    pvalue = res$pvalue,
    padj = res$padj,
    stringsAsFactors = FALSE
  )
}

set.seed(1)

## Pasilla: 14,599 genes x 7 samples; annotation rows are "<sample>fb" in another order.
pasilla <- as.matrix(read.delim(file.path(data_dir, "rnaseq_pasilla/pasilla_gene_counts.tsv"),
                                row.names = "gene_id", check.names = FALSE))
annotation <- read.csv(file.path(data_dir, "rnaseq_pasilla/pasilla_sample_annotation.csv"))
rownames(annotation) <- sub("fb$", "", annotation$file)
coldata <- annotation[colnames(pasilla), c("condition", "type")]
coldata$condition <- factor(coldata$condition, levels = c("untreated", "treated"))
coldata$type <- factor(coldata$type)

write_tsv(sample_factors(pasilla, pasilla), "pasilla_sample_factors.tsv")

y <- calcNormFactors(DGEList(pasilla), method = "TMM")
write_tsv(long(cpm(y, log = TRUE, prior.count = 2), "log2_cpm"), "pasilla_log2cpm.tsv", gzip = TRUE)

dds <- DESeqDataSetFromMatrix(pasilla, coldata, design = ~ type + condition)
vst_long <- long(assay(vst(dds, blind = TRUE)), "vst")
vst_long$vst_full <- as.vector(assay(varianceStabilizingTransformation(dds, blind = TRUE)))
write_tsv(vst_long, "pasilla_vst.tsv", gzip = TRUE)

dds <- DESeq(dds, quiet = TRUE)
write_tsv(de_table(dds, c("condition", "treated", "untreated")), "pasilla_de_condition.tsv", gzip = TRUE)

dds_nocov <- DESeq(DESeqDataSetFromMatrix(pasilla, coldata, design = ~condition), quiet = TRUE)
write_tsv(de_table(dds_nocov, c("condition", "treated", "untreated")), "pasilla_de_condition_nocov.tsv",
          gzip = TRUE)

# Intermediate figures of DESeq(): dispersions per gene, and the trend and prior per design.
dispersion_table <- function(dds, design) {
  mc <- mcols(dds)
  data.frame(design = design, feature_id = rownames(dds), disp_gene_est = mc$dispGeneEst,
             disp_fit = mc$dispFit, dispersion = mc$dispersion, stringsAsFactors = FALSE)
}
trend_table <- function(dds, design) {
  fn <- dispersionFunction(dds)
  coefs <- attr(fn, "coefficients")
  data.frame(design = design, asympt_disp = unname(coefs[1]), extra_pois = unname(coefs[2]),
             var_log_disp_ests = attr(fn, "varLogDispEsts"), disp_prior_var = attr(fn, "dispPriorVar"),
             stringsAsFactors = FALSE)
}
write_tsv(rbind(dispersion_table(dds, "~ type + condition"), dispersion_table(dds_nocov, "~ condition")),
          "pasilla_dispersions.tsv", gzip = TRUE)
pasilla_trends <- rbind(trend_table(dds, "~ type + condition"), trend_table(dds_nocov, "~ condition"))

## Airway featureCounts subset: 20 genes x 8 samples, 16 genes with any count.
fc <- read.delim(file.path(data_dir, "rnaseq_airway/featurecounts/airway_subset_featureCounts.txt"),
                 comment.char = "#", check.names = FALSE)
airway <- as.matrix(fc[, 7:ncol(fc)])
rownames(airway) <- fc$Geneid
colnames(airway) <- sub("_subset\\.bam$", "", basename(colnames(airway)))
sample_table <- read.csv(file.path(data_dir, "rnaseq_airway/sample_table.csv"))
rownames(sample_table) <- sample_table$Run
airway_coldata <- sample_table[colnames(airway), c("cell", "dex")]
airway_coldata$dex <- factor(airway_coldata$dex, levels = c("untrt", "trt"))
airway_coldata$cell <- factor(airway_coldata$cell)

write_tsv(sample_factors(airway, airway), "airway_sample_factors.tsv")
y <- calcNormFactors(DGEList(airway), method = "TMM")
write_tsv(long(cpm(y, log = TRUE, prior.count = 2), "log2_cpm"), "airway_log2cpm.tsv")

# DESeq2 defaults: the parametric dispersion trend converges on these 16 non-zero genes (no fallback).
dds <- DESeq(DESeqDataSetFromMatrix(airway, airway_coldata, design = ~ cell + dex), quiet = TRUE)
write_tsv(de_table(dds, c("dex", "trt", "untrt")), "airway_de_dex.tsv")
# Residual df 3: dispPriorVar comes from DESeq2's Monte Carlo (set.seed(2)) + loess, not from the MAD.
write_tsv(rbind(pasilla_trends, trend_table(dds, "~ cell + dex")), "dispersion_trends.tsv")

## Outlier replacement: 8 + 8 samples (>= minReplicatesForReplace = 7 per cell), simulated by DESeq2 itself,
## with one count of each of the first 20 genes multiplied by 20 (sample 1 for genes 1-10, sample 9 for 11-20).
set.seed(3)
sim <- makeExampleDESeqDataSet(n = 500, m = 16, betaSD = 1)
sim_counts <- counts(sim)
sim_counts[1:10, 1] <- sim_counts[1:10, 1] * 20L
sim_counts[11:20, 9] <- sim_counts[11:20, 9] * 20L
write.table(data.frame(gene_id = rownames(sim_counts), sim_counts, check.names = FALSE),
            file.path(out_dir, "simulated_outliers_counts.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
sim_coldata <- data.frame(row.names = colnames(sim_counts), condition = sim$condition)
dds <- DESeq(DESeqDataSetFromMatrix(sim_counts, sim_coldata, design = ~condition), quiet = TRUE)
write_tsv(de_table(dds, c("condition", "B", "A")), "simulated_outliers_de.tsv")

## Geuvadis RSEM: 1,000 genes (first of 58,288, see rnaseq_geuvadis_rsem/SOURCE.md) x 6 samples, fractional counts.
files <- sort(list.files(file.path(data_dir, "rnaseq_geuvadis_rsem"), pattern = "\\.genes\\.results\\.gz$",
                         full.names = TRUE))
rsem <- lapply(files, read.delim, check.names = FALSE)
geuvadis <- sapply(rsem, function(x) x$expected_count)
rownames(geuvadis) <- rsem[[1]]$gene_id
colnames(geuvadis) <- sub("\\.genes\\.results\\.gz$", "", basename(files))
stopifnot(all(sapply(rsem, function(x) identical(x$gene_id, rsem[[1]]$gene_id))))
write_tsv(sample_factors(geuvadis, round(geuvadis)), "geuvadis_sample_factors.tsv")

writeLines(capture.output(sessionInfo()), file.path(out_dir, "sessionInfo.txt"))
