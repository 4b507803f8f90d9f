-- What a page says besides its <a> links (issue 13): the kind of every `links` row and two
-- indexing signals per page (rel=canonical target, noindex). As migrations/sqlite/0005.

ALTER TABLE links ADD COLUMN kind text NOT NULL DEFAULT 'a';
ALTER TABLE page_rows ADD COLUMN canonical_url text;
ALTER TABLE page_rows ADD COLUMN noindex integer;

-- New columns go at the end: CREATE OR REPLACE VIEW keeps the existing ones as they are.
CREATE OR REPLACE VIEW pages AS
SELECT p.id, p.url, p.final_url, p.status, p.final_status, p.error, p.content_type, p.depth,
       p.fetched_at, b.body, p.host, p.headers, p.elapsed, p.size, p.truncated, p.links_found,
       p.links_truncated, p.redirect_to, p.attempts, b.body_codec, p.content_hash, p.title,
       p.canonical_url, p.noindex
FROM page_rows AS p LEFT JOIN bodies AS b ON b.page_id = p.id;
