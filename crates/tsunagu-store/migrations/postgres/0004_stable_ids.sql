-- SQLite's tree rebuilds media_files and jobs so ids are never reused (AUTOINCREMENT); PostgreSQL's
-- identity column never reuses them already. Kept so both trees have the same versions.
SELECT 1;
