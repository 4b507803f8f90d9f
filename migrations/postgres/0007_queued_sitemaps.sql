-- A host with a sitemap still to read is work for the lease holders (`hosts.queued`, the
-- crawl's end test): that question is asked per host as leases are released.
CREATE INDEX sitemaps_queued ON sitemaps (robots_host) WHERE state = 'queued';
