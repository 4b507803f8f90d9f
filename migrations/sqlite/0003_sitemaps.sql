-- Sitemaps (issue 13): each sitemap fetched, apart from `pages` (a sitemap fetch is no page:
-- it counts against no --max-pages), and what each sitemap said about the URLs it lists.
-- Runs in one transaction with its schema_migrations row.

-- One row per sitemap the crawl found: named by a robots.txt `Sitemap:` line, probed
-- (/sitemap.xml, --sitemap-probe) or listed by a sitemap index. `queued` until its fetch
-- is committed, so a resumed crawl fetches the queued ones again and never the done ones.
CREATE TABLE sitemaps (
    url           TEXT PRIMARY KEY,           -- canonical
    host          TEXT NOT NULL,              -- politeness key of the sitemap's own host
    robots_host   TEXT NOT NULL,              -- host whose robots.txt led here: its URLs count too
    source        TEXT NOT NULL,              -- the robots.txt or sitemap index that named it
    level         INTEGER NOT NULL DEFAULT 0, -- 0: named by robots.txt; n: n indexes below it
    state         TEXT NOT NULL DEFAULT 'queued',  -- queued | done
    kind          TEXT,                       -- urlset | sitemapindex | text (NULL: unread)
    status        INTEGER,                    -- HTTP status; NULL on network error or unfetched
    error         TEXT,                       -- NULL when read to its end
    urls          INTEGER,                    -- entries read (URLs, or an index's sitemaps)
    discovered_at REAL NOT NULL,
    fetched_at    REAL                        -- NULL while queued
);

-- What a sitemap says about each URL it lists on its own host (or its robots.txt's host).
CREATE TABLE sitemap_urls (
    url        TEXT NOT NULL,                 -- canonical
    sitemap    TEXT NOT NULL,                 -- sitemaps.url
    lastmod    TEXT,                          -- as written (W3C datetime)
    changefreq TEXT,                          -- as written
    priority   REAL,                          -- 0.0 to 1.0; NULL when absent or invalid
    PRIMARY KEY (url, sitemap)
);
