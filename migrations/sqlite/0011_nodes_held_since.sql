-- Node leases are a cluster's (PostgreSQL only); SQLite keeps its migration numbers in step.
SELECT 1;
