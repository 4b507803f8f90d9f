-- pages.data: the fields that hooks and --extract stored for a page, as a JSON object
-- (crawler/hooks.py); NULL when none did. Read with data ->> 'name'.
ALTER TABLE page_rows ADD COLUMN data jsonb;

CREATE OR REPLACE VIEW pages AS
SELECT p.id, p.url, p.final_url, p.status, p.final_status, p.error, p.content_type, p.depth,
       p.fetched_at, b.body, p.host, p.headers, p.elapsed, p.size, p.truncated, p.links_found,
       p.links_truncated, p.redirect_to, p.attempts, b.body_codec, p.content_hash, p.title,
       p.canonical_url, p.noindex, p.data
FROM page_rows AS p LEFT JOIN bodies AS b ON b.page_id = p.id;
