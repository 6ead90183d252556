package sdk

import "time"

// ExpireTokenSoon makes the cached token look five seconds from expiry.
func ExpireTokenSoon(c *Client) {
	c.mu.Lock()
	c.current.Expiry = time.Now().Add(5 * time.Second)
	c.mu.Unlock()
}
