package metrics

// NoScrapeCache has every scrape gather anew, for tests that change what
// is read between two scrapes.
func NoScrapeCache(m *Metrics) { m.cacheFor = 0 }
