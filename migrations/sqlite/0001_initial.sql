-- The crawl's schema. Each migration runs in one transaction with its schema_migrations row.

-- One row: what the crawl was started with, so `crawler resume` can continue it.
CREATE TABLE crawl (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    settings    TEXT NOT NULL,              -- JSON of crawler.config.Settings
    seeds       TEXT NOT NULL,              -- JSON list of canonical seed URLs
    started_at  REAL NOT NULL,              -- unix time of the first start
    resumed_at  REAL,                       -- unix time of the latest resume
    finished_at REAL                        -- unix time the frontier ran dry (NULL while unfinished)
);

-- Every URL the crawl decided to follow, fetched or not: the persisted frontier and seen-set.
CREATE TABLE urls (
    id            INTEGER PRIMARY KEY,       -- insertion order: the frontier is scanned by it
    url           TEXT NOT NULL UNIQUE,      -- canonical
    host          TEXT NOT NULL,             -- politeness key: scheme://host:port
    depth         INTEGER NOT NULL,          -- link hops from a seed (redirect hops do not count)
    state         TEXT NOT NULL DEFAULT 'queued',  -- queued | done | disallowed | dropped
    hops          INTEGER NOT NULL DEFAULT 0,      -- redirect hops from `origin`
    origin        TEXT,                      -- first URL of the redirect chain that led here
    reason        TEXT,                      -- why a URL was disallowed or dropped
    discovered_at REAL NOT NULL
);
CREATE INDEX urls_queued ON urls (host, id) WHERE state = 'queued';

-- Contract view: URLs discovered and not yet fetched.
CREATE VIEW frontier AS
    SELECT url, depth, state, host, reason, discovered_at FROM urls WHERE state <> 'done';

-- One row per fetched URL. HTTP statuses are data; network errors have status NULL.
CREATE TABLE pages (
    id              INTEGER PRIMARY KEY,
    url             TEXT NOT NULL UNIQUE,    -- canonical requested URL
    final_url       TEXT,                    -- where the redirect chain ended (or Location, until it does)
    status          INTEGER,                 -- NULL on network error
    error           TEXT,                    -- NULL when OK
    content_type    TEXT,
    depth           INTEGER NOT NULL,
    fetched_at      REAL NOT NULL,           -- unix time the response was complete
    body            BLOB,                    -- content-decoded; zlib when body_codec = 'zlib'
    host            TEXT NOT NULL,
    headers         TEXT,                    -- JSON list of [name, value], as received
    elapsed         REAL,                    -- seconds from sending the request to the last byte
    size            INTEGER,                 -- body bytes kept (before our own compression)
    truncated       INTEGER NOT NULL DEFAULT 0,  -- 1 when the body was cut at max_bytes
    links_found     INTEGER,                 -- links extracted (followable + nofollow)
    links_truncated INTEGER NOT NULL DEFAULT 0,  -- 1 when the page had more than max_links
    redirect_to     TEXT,                    -- canonical Location of a 3xx
    attempts        INTEGER NOT NULL DEFAULT 1,
    body_codec      TEXT,                    -- NULL: plain; 'zlib'
    content_hash    TEXT,                    -- sha1 of the body as received, for finding duplicates
    title           TEXT
);
CREATE INDEX pages_host ON pages (host);

-- Every link seen on a stored page, in scope or not.
CREATE TABLE links (
    src_url  TEXT NOT NULL,
    dst_url  TEXT NOT NULL,
    nofollow INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX links_dst ON links (dst_url);

-- robots.txt as fetched, one row per host.
CREATE TABLE robots (
    host       TEXT PRIMARY KEY,
    status     INTEGER,
    error      TEXT,
    body       TEXT,
    fetched_at REAL NOT NULL
);
