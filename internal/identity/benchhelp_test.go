package identity

import "fmt"

// replayCacheFor is a replay memory that holds n values, for benchmarks.
func replayCacheFor(n int) *ReplayCache { return NewReplayCache(n) }

// withSource gives request i a source of its own, so that a benchmark of
// refusals measures the refusal and not the rate limits.
func withSource(r TokenRequest, i int) TokenRequest {
	r.Source = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	return r
}
