-- Sitemaps (issue 13): the SQLite 0003 tables in PostgreSQL's types. Runs in one
-- transaction with its schema_migrations row, under an advisory lock.

CREATE TABLE sitemaps (
    url           text PRIMARY KEY,
    host          text NOT NULL,
    robots_host   text NOT NULL,
    source        text NOT NULL,
    level         integer NOT NULL DEFAULT 0,
    state         text NOT NULL DEFAULT 'queued',  -- queued | done
    kind          text,
    status        integer,
    error         text,
    urls          integer,
    discovered_at double precision NOT NULL,
    fetched_at    double precision
);

CREATE TABLE sitemap_urls (
    url        text NOT NULL,
    sitemap    text NOT NULL,
    lastmod    text,
    changefreq text,
    priority   double precision,
    PRIMARY KEY (url, sitemap)
);
