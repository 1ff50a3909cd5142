-- Claims are PostgreSQL's (a cluster); SQLite keeps its migration numbers in step.
SELECT 1;
