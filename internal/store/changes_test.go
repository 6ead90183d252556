package store

import (
	"context"
	"testing"
)

func TestBroadcasterReplacesAFullQueueWithAResync(t *testing.T) {
	t.Parallel()
	var b Broadcaster
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := b.Subscribe(ctx)
	for i := 0; i < subscriberBuffer+1; i++ {
		b.Publish(Change{Kind: ChangeAgent, Key: "a"})
	}
	// The subscriber did not read: the overflow must be the first thing it sees.
	if c := <-ch; c.Kind != ChangeResync {
		t.Fatalf("first change after an overflow: %+v, want a resync", c)
	}
	b.Publish(Change{Kind: ChangeTokenRevoked, Key: "j"})
	if c := <-ch; c.Kind != ChangeTokenRevoked {
		t.Fatalf("after the resync: %+v", c)
	}
}
