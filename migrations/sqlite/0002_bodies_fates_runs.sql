-- Bodies move out of the hot pages row; every URL's fate (final_status, skipped-link counts);
-- runs; indexes for redirect chains. Runs in one transaction with its schema_migrations row.
-- `pages` is rebuilt as https://www.sqlite.org/lang_altertable.html#otheralter describes:
-- new tables, copy, drop the old one, then the view that keeps its name and columns.

-- The row of a fetched URL without its body: what stats, exports and `why` read.
CREATE TABLE page_rows (
    id              INTEGER PRIMARY KEY,
    url             TEXT NOT NULL UNIQUE,
    final_url       TEXT,
    status          INTEGER,
    final_status    INTEGER,                 -- status where the redirect chain ended (= status otherwise)
    error           TEXT,
    content_type    TEXT,
    depth           INTEGER NOT NULL,
    fetched_at      REAL NOT NULL,
    host            TEXT NOT NULL,
    headers         TEXT,
    elapsed         REAL,
    size            INTEGER,
    truncated       INTEGER NOT NULL DEFAULT 0,
    links_found     INTEGER,
    links_truncated INTEGER NOT NULL DEFAULT 0,
    redirect_to     TEXT,
    attempts        INTEGER NOT NULL DEFAULT 1,
    content_hash    TEXT,
    title           TEXT
);

-- One row per page that has a body (NULL bodies have no row), keyed by the page's id.
CREATE TABLE bodies (
    page_id    INTEGER PRIMARY KEY REFERENCES page_rows (id) ON DELETE CASCADE,
    body       BLOB NOT NULL,              -- content-decoded; zlib when body_codec = 'zlib'
    body_codec TEXT                        -- NULL: plain; 'zlib'
);

-- A redirect's final status: the status of the page its (resolved) final_url names.
INSERT INTO page_rows (
    id, url, final_url, status, final_status, error, content_type, depth, fetched_at, host,
    headers, elapsed, size, truncated, links_found, links_truncated, redirect_to, attempts,
    content_hash, title
)
SELECT p.id, p.url, p.final_url, p.status,
       CASE WHEN p.status BETWEEN 300 AND 399
            THEN (SELECT f.status FROM pages AS f
                  WHERE f.url = p.final_url AND f.status NOT BETWEEN 300 AND 399)
            ELSE p.status END,
       p.error, p.content_type, p.depth, p.fetched_at, p.host, p.headers, p.elapsed, p.size,
       p.truncated, p.links_found, p.links_truncated, p.redirect_to, p.attempts,
       p.content_hash, p.title
FROM pages AS p
ORDER BY p.id;

INSERT INTO bodies (page_id, body, body_codec)
SELECT id, body, body_codec FROM pages WHERE body IS NOT NULL ORDER BY id;

DROP TABLE pages;
CREATE INDEX pages_host ON page_rows (host);
CREATE INDEX pages_redirect_to ON page_rows (redirect_to) WHERE redirect_to IS NOT NULL;

-- Contract view: the 0001 `pages` columns, and final_status. Body and codec are scalar
-- subqueries, not a join: SQLite drops an unused result column, so a query that reads no
-- body column never touches `bodies` (a LEFT JOIN would still be searched by aggregates).
CREATE VIEW pages AS
SELECT id, url, final_url, status, final_status, error, content_type, depth, fetched_at,
       (SELECT body FROM bodies WHERE page_id = page_rows.id) AS body,
       host, headers, elapsed, size, truncated, links_found, links_truncated, redirect_to,
       attempts,
       (SELECT body_codec FROM bodies WHERE page_id = page_rows.id) AS body_codec,
       content_hash, title
FROM page_rows;

-- SQL written for the 0001 table keeps working (the crawler itself writes the tables).
CREATE TRIGGER pages_insert INSTEAD OF INSERT ON pages
BEGIN
    INSERT INTO page_rows (
        id, url, final_url, status, final_status, error, content_type, depth, fetched_at, host,
        headers, elapsed, size, truncated, links_found, links_truncated, redirect_to, attempts,
        content_hash, title
    ) VALUES (
        NEW.id, NEW.url, NEW.final_url, NEW.status,
        coalesce(NEW.final_status, CASE WHEN NEW.status NOT BETWEEN 300 AND 399 THEN NEW.status END),
        NEW.error, NEW.content_type, NEW.depth, NEW.fetched_at, NEW.host, NEW.headers,
        NEW.elapsed, NEW.size, coalesce(NEW.truncated, 0), NEW.links_found,
        coalesce(NEW.links_truncated, 0), NEW.redirect_to, coalesce(NEW.attempts, 1),
        NEW.content_hash, NEW.title
    );
    -- Only when the row above was inserted (INSERT OR IGNORE may have skipped it).
    INSERT INTO bodies (page_id, body, body_codec)
    SELECT id, NEW.body, NEW.body_codec FROM page_rows
    WHERE NEW.body IS NOT NULL AND id = last_insert_rowid() AND url = NEW.url;
END;

CREATE TRIGGER pages_update INSTEAD OF UPDATE ON pages
BEGIN
    UPDATE page_rows SET
        url = NEW.url, final_url = NEW.final_url, status = NEW.status,
        final_status = NEW.final_status, error = NEW.error, content_type = NEW.content_type,
        depth = NEW.depth, fetched_at = NEW.fetched_at, host = NEW.host, headers = NEW.headers,
        elapsed = NEW.elapsed, size = NEW.size, truncated = NEW.truncated,
        links_found = NEW.links_found, links_truncated = NEW.links_truncated,
        redirect_to = NEW.redirect_to, attempts = NEW.attempts,
        content_hash = NEW.content_hash, title = NEW.title
    WHERE id = OLD.id;
    DELETE FROM bodies WHERE page_id = OLD.id AND NEW.body IS NULL;
    INSERT OR REPLACE INTO bodies (page_id, body, body_codec)
    SELECT OLD.id, NEW.body, NEW.body_codec
    WHERE NEW.body IS NOT NULL
      AND (NEW.body IS NOT OLD.body OR NEW.body_codec IS NOT OLD.body_codec);
END;

CREATE TRIGGER pages_delete INSTEAD OF DELETE ON pages
BEGIN
    DELETE FROM bodies WHERE page_id = OLD.id;
    DELETE FROM page_rows WHERE id = OLD.id;
END;

-- Every URL of a redirect chain names its first URL: a chain's end updates them all.
CREATE INDEX urls_origin ON urls (origin) WHERE origin IS NOT NULL;

-- Links not followed, counted by reason (crawler.reasons.Reason values) over the crawl.
CREATE TABLE skipped (
    reason TEXT PRIMARY KEY,
    count  INTEGER NOT NULL
);

-- One row per `crawl` or `resume`: what `stats` sums into the crawl's duration.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('crawl', 'resume')),
    started_at  REAL NOT NULL,
    ended_at    REAL,                      -- NULL while running, or when the run was killed
    pages       INTEGER,                   -- pages stored by the run
    interrupted INTEGER                    -- 1: stopped before the frontier ran dry
);

-- A crawl from before runs were recorded: its pages' time span, as one run.
INSERT INTO runs (kind, started_at, ended_at, pages, interrupted)
SELECT 'crawl', min(fetched_at), max(fetched_at), count(*),
       coalesce((SELECT finished_at IS NULL FROM crawl WHERE id = 1), 1)
FROM page_rows
HAVING count(*) > 0;
