-- Spool replays are PostgreSQL's; SQLite keeps its migration numbers in step.
SELECT 1;
