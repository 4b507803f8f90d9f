-- Incremental recrawl: every fetch's history (`fetches`), each page's revisit schedule
-- (`page_rows.revisit_interval`, `page_rows.due_at`), runs of kind 'recrawl', and the crawl's
-- recrawl flag. Runs in one transaction with its schema_migrations row.

-- One row per fetch of a URL, the first crawl's included: what changed and when.
-- No index: written in the batch that stores its page (the hot path), read by queries.
CREATE TABLE fetches (
    id           INTEGER PRIMARY KEY,
    url          TEXT NOT NULL,             -- pages.url
    run_id       INTEGER,                   -- runs.id of the run that fetched it
    fetched_at   REAL NOT NULL,
    status       INTEGER,                   -- as received (304 for a not-modified answer)
    error        TEXT,
    content_hash TEXT,                      -- SHA-1 of the body received (the stored one on a 304)
    change       TEXT NOT NULL              -- new | changed | unchanged | gone | failed
);

-- A page's revisit schedule, adapted at each recrawl; NULL: never recrawled yet (the
-- crawl's recrawl_interval from fetched_at).
ALTER TABLE page_rows ADD COLUMN revisit_interval REAL;
ALTER TABLE page_rows ADD COLUMN due_at REAL;

-- 1 from `crawler recrawl` until it ends: `crawler resume` then continues a recrawl.
ALTER TABLE crawl ADD COLUMN recrawling INTEGER NOT NULL DEFAULT 0;

-- runs.kind gains 'recrawl': a CHECK changes by rebuilding the table.
CREATE TABLE runs_new (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('crawl', 'resume', 'recrawl')),
    started_at  REAL NOT NULL,
    ended_at    REAL,
    pages       INTEGER,
    interrupted INTEGER
);
INSERT INTO runs_new SELECT id, kind, started_at, ended_at, pages, interrupted FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;

-- The pages stored before: one fetch each, by the run that was going when it was fetched.
INSERT INTO fetches (url, run_id, fetched_at, status, error, content_hash, change)
SELECT url,
       coalesce((SELECT max(r.id) FROM runs AS r WHERE r.started_at <= p.fetched_at),
                (SELECT min(r.id) FROM runs AS r)),
       fetched_at, status, error, content_hash, 'new'
FROM page_rows AS p
ORDER BY id;
