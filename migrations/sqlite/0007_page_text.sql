-- Full-text search: each HTML page's visible text in its own table (the hot page_rows row
-- stays small), and an FTS5 index over title and text kept up to date by triggers, so any
-- writer (a crawl's batch, `crawler search --reindex`, a recrawl, a user's UPDATE) keeps it
-- right and nothing is ever rebuilt from scratch. Pages stored before this migration have
-- no text: `crawler search --reindex` extracts it from their stored bodies (zlib or plain),
-- which SQL alone cannot do.

CREATE TABLE page_text (
    page_id   INTEGER PRIMARY KEY REFERENCES page_rows (id) ON DELETE CASCADE,
    title     TEXT,                           -- the page's <title>, as page_rows.title
    text      TEXT NOT NULL,                  -- visible text, whitespace collapsed
    truncated INTEGER NOT NULL DEFAULT 0      -- 1: cut at 100,000 characters (crawler.text.TEXT_LIMIT)
);

-- External content: the index stores only its inverted lists; title and text are read
-- from page_text (snippet(), highlight()) by rowid = page_id.
CREATE VIRTUAL TABLE page_text_fts USING fts5 (
    title, text,
    content = 'page_text', content_rowid = 'page_id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER page_text_insert AFTER INSERT ON page_text
BEGIN
    INSERT INTO page_text_fts (rowid, title, text) VALUES (NEW.page_id, NEW.title, NEW.text);
END;

CREATE TRIGGER page_text_delete AFTER DELETE ON page_text
BEGIN
    INSERT INTO page_text_fts (page_text_fts, rowid, title, text)
    VALUES ('delete', OLD.page_id, OLD.title, OLD.text);
END;

CREATE TRIGGER page_text_update AFTER UPDATE ON page_text
BEGIN
    INSERT INTO page_text_fts (page_text_fts, rowid, title, text)
    VALUES ('delete', OLD.page_id, OLD.title, OLD.text);
    INSERT INTO page_text_fts (rowid, title, text) VALUES (NEW.page_id, NEW.title, NEW.text);
END;
