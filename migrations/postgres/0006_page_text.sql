-- Full-text search: each HTML page's visible text in its own table (the hot page_rows row
-- stays small), with a generated tsvector (title weighted A, text B) under a GIN index:
-- PostgreSQL keeps it right on every INSERT and UPDATE, whoever writes. The 'simple'
-- configuration (no stemming, no stop words) matches what SQLite's FTS5 unicode61 finds.
-- Pages stored before this migration have no text: `crawler search --reindex` extracts it
-- from their stored bodies.

CREATE TABLE page_text (
    page_id   bigint PRIMARY KEY REFERENCES page_rows (id) ON DELETE CASCADE,
    title     text,                           -- the page's <title>, as page_rows.title
    text      text NOT NULL,                  -- visible text, whitespace collapsed
    truncated integer NOT NULL DEFAULT 0,     -- 1: cut at 100,000 characters (crawler.text.TEXT_LIMIT)
    tsv       tsvector GENERATED ALWAYS AS (
                  setweight(to_tsvector('simple', coalesce(title, '')), 'A')
                  || setweight(to_tsvector('simple', text), 'B')
              ) STORED
);

CREATE INDEX page_text_tsv ON page_text USING gin (tsv);
