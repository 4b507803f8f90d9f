-- Leases per server, not per origin: politeness is per server (crawler.urls.server_key: the
-- host name, plus the port when it is not the scheme's default), so http://a and https://a
-- are one server with one --per-host slot and one --delay. With a lease per origin two
-- workers could each hold one origin of a server and fetch it at once. A worker now leases
-- a server (`servers`) and crawls every origin of it (`hosts.server`).

-- crawler.urls.server_key in SQL, for an origin as `host_key` writes it (scheme://host:port).
CREATE FUNCTION server_key(origin text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE
        WHEN strpos(origin, '://') = 0 THEN ''
        WHEN origin ~ '^http://.+:80$' THEN substring(origin FROM '^http://(.+):80$')
        WHEN origin ~ '^https://.+:443$' THEN substring(origin FROM '^https://(.+):443$')
        ELSE substr(origin, strpos(origin, '://') + 3)
    END;

-- Existing rows get theirs as the column is added.
ALTER TABLE hosts ADD COLUMN server text GENERATED ALWAYS AS (server_key(host)) STORED;
CREATE INDEX hosts_server ON hosts (server);

-- `queued`: some origin of the server may have queued work (every writer that sets
-- hosts.queued sets it too; a release recomputes both). The lease, its end and the
-- earliest next request are the server's.
CREATE TABLE servers (
    server      text PRIMARY KEY,
    queued      boolean NOT NULL DEFAULT true,
    lease_owner uuid,
    lease_until double precision NOT NULL DEFAULT 0,
    next_start  double precision NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
CREATE INDEX servers_free ON servers (next_start) WHERE queued;

-- A server whose origins were held by a live worker stays that worker's (the latest lease
-- of them): it lapses, or is released, as the origins would have been.
INSERT INTO servers (server, queued, lease_owner, lease_until, next_start)
SELECT server,
       bool_or(queued),
       (array_agg(lease_owner ORDER BY lease_until DESC) FILTER (WHERE lease_owner IS NOT NULL))[1],
       coalesce(max(lease_until) FILTER (WHERE lease_owner IS NOT NULL), 0),
       max(next_start)
FROM hosts
GROUP BY server
ORDER BY server;

-- Dropping next_start drops hosts_free with it.
ALTER TABLE hosts DROP COLUMN lease_owner, DROP COLUMN lease_until, DROP COLUMN next_start;
