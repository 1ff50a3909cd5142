-- Cluster membership lives in PostgreSQL only (a cluster needs a shared store); SQLite keeps the
-- migration number so both stores count their schema versions alike.

SELECT 1;
