-- quarantine: the rows kept out of the tables, with the file, line, column and reason.
CREATE VIEW quarantine AS
SELECT study_id, file, line, "column", code, message, record
FROM ingest_issues
WHERE record IS NOT NULL;
