-- Spool replay marks are PostgreSQL's (the spool is PostgreSQL's fallback); SQLite keeps its
-- migration numbers in step.
SELECT 1;
