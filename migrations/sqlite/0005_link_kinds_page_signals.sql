-- What a page says besides its <a> links (issue 13): the kind of every `links` row (a link,
-- or a subresource: img, script, style, icon, preload, iframe) and two indexing signals
-- per page, the rel=canonical target and noindex (meta robots or X-Robots-Tag). Rows stored
-- before keep kind 'a' (they were all <a>/<area> links) and NULL signals (not recorded).

ALTER TABLE links ADD COLUMN kind TEXT NOT NULL DEFAULT 'a';
ALTER TABLE page_rows ADD COLUMN canonical_url TEXT;   -- <link rel=canonical>, canonical form
ALTER TABLE page_rows ADD COLUMN noindex INTEGER;      -- 1: noindex for us; NULL: not known

-- The view gains the two columns; dropping it drops its triggers, made again below with
-- the same bodies plus the new columns.
DROP VIEW pages;
CREATE VIEW pages AS
SELECT id, url, final_url, status, final_status, error, content_type, depth, fetched_at,
       (SELECT body FROM bodies WHERE page_id = page_rows.id) AS body,
       host, headers, elapsed, size, truncated, links_found, links_truncated, redirect_to,
       attempts,
       (SELECT body_codec FROM bodies WHERE page_id = page_rows.id) AS body_codec,
       content_hash, title, canonical_url, noindex
FROM page_rows;

CREATE TRIGGER pages_insert INSTEAD OF INSERT ON pages
BEGIN
    INSERT INTO page_rows (
        id, url, final_url, status, final_status, error, content_type, depth, fetched_at, host,
        headers, elapsed, size, truncated, links_found, links_truncated, redirect_to, attempts,
        content_hash, title, canonical_url, noindex
    ) VALUES (
        NEW.id, NEW.url, NEW.final_url, NEW.status,
        coalesce(NEW.final_status, CASE WHEN NEW.status NOT BETWEEN 300 AND 399 THEN NEW.status END),
        NEW.error, NEW.content_type, NEW.depth, NEW.fetched_at, NEW.host, NEW.headers,
        NEW.elapsed, NEW.size, coalesce(NEW.truncated, 0), NEW.links_found,
        coalesce(NEW.links_truncated, 0), NEW.redirect_to, coalesce(NEW.attempts, 1),
        NEW.content_hash, NEW.title, NEW.canonical_url, NEW.noindex
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
        content_hash = NEW.content_hash, title = NEW.title,
        canonical_url = NEW.canonical_url, noindex = NEW.noindex
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
