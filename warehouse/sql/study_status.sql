-- study_status: one row per study the warehouse tried to load (a study whose first load failed too): its last
-- ingest attempt (when, which run, by the CLI or Dagster, the result), the version readers see, its error and
-- warning counts and the first located error. `omicsdw status` prints it; `omicsdw status --failed` exits 1 when a
-- study failed or was withheld. A failure after an ingest that loaded new content (a later stage, a check) shows as
-- withheld: its message is in the run's summary (<warehouse>/runs/failures.log for daemon runs, the build's output
-- for the CLI). An ingest that finds the study unchanged records no attempt: the row keeps the last attempt that
-- read the study, so a run that found it unchanged and then failed in a later stage is not shown here (see
-- runs/failures.log).
-- @attempted_at When the study's last ingest attempt that read it (not one that found it unchanged) committed its ingest_issues.
-- @run_id Dagster run id of that attempt (the CLI build's runs too; NULL: made before runs were recorded).
-- @launched_by What started the run: cli (omicsdw build), schedule, sensor or dagster (the UI, a job by hand).
-- @result loaded (the attempt's load is what readers see), withheld (ingested without errors but not published: a later stage or check failed), failed (the ingest found errors; nothing of it was loaded).
-- @published_version Delta version of the studies table readers see for the study (NULL: nothing published).
-- @published_at When the study's visible version was published (NULL: never).
-- @errors Error rows of the study's last attempt in ingest_issues (any error fails the study).
-- @warnings Warning rows of the study's last attempt in ingest_issues.
-- @first_error_file File of the first located error (by file, line, column), relative to the study folder.
-- @first_error_line Its 1-based line, when known.
-- @first_error_column Its column (header name), when known.
-- @first_error The first error's code and reason.
CREATE VIEW study_status AS
WITH issues AS (
    SELECT study_id,
           count(*) FILTER (WHERE severity = 'error') AS errors,
           count(*) FILTER (WHERE severity = 'warning') AS warnings
    FROM ingest_issues GROUP BY study_id
), first_errors AS (
    SELECT study_id, file, line, "column", code || ': ' || message AS reason,
           row_number() OVER (PARTITION BY study_id ORDER BY file, line NULLS LAST, "column" NULLS LAST, code) AS n
    FROM ingest_issues WHERE severity = 'error'
), published AS (
    SELECT study_id, delta_version, fingerprint, published_at FROM study_versions WHERE table_name = 'studies'
)
SELECT a.study_id,
       a.attempted_at,
       a.run_id,
       a.launched_by,
       CASE WHEN a.failed THEN 'failed'
            WHEN p.fingerprint IS NOT DISTINCT FROM a.fingerprint THEN 'loaded'
            ELSE 'withheld' END AS result,
       p.delta_version AS published_version,
       p.published_at,
       coalesce(i.errors, 0) AS errors,
       coalesce(i.warnings, 0) AS warnings,
       f.file AS first_error_file,
       f.line AS first_error_line,
       f."column" AS first_error_column,
       f.reason AS first_error
FROM ingest_attempts a
LEFT JOIN published p USING (study_id)
LEFT JOIN issues i USING (study_id)
LEFT JOIN first_errors f ON f.study_id = a.study_id AND f.n = 1
ORDER BY a.study_id;
