package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/policy"
)

// registryConfig is the policy registry's configuration.
func registryConfig(c config.Policy, log *slog.Logger) policy.RegistryConfig {
	return policy.RegistryConfig{
		Engine: policy.EngineConfig{Timeout: c.Timeout, Limits: c.Limits.Bundle()},
		Tests: policy.TestRunConfig{Concurrency: c.Tests.Concurrency, Timeout: c.Tests.Timeout,
			MemoryBytes: c.Tests.MemoryBytes, Worker: c.TestWorker},
		Logger: log,
	}
}

// policyDirActor is who pushes and activates a bundle loaded from the
// policy directory.
const policyDirActor = "system:policy-dir"

// loadPolicyDir pushes the bundle in cfg.Policy.Dir and activates it. At
// start a bundle that does not compile or pass its tests stops the server:
// it was asked for, and running on another would mislead.
func (a *App) loadPolicyDir(ctx context.Context) error {
	dir := a.cfg.Policy.Dir
	b, err := policy.LoadDir(dir)
	if err != nil {
		return fmt.Errorf("--policies %s: %w", dir, err)
	}
	if _, err := a.applyBundle(ctx, b); err != nil {
		return fmt.Errorf("--policies %s: %w", dir, err)
	}
	return nil
}

// applyBundle pushes b and activates it unless it is active already.
func (a *App) applyBundle(ctx context.Context, b *policy.Bundle) (string, error) {
	v, _, created, err := a.Policies.Push(ctx, policyDirActor, b, "loaded from "+a.cfg.Policy.Dir)
	if err != nil {
		return "", err
	}
	active := a.Policies.Live().State.Active
	if !created && active == v.ID {
		return v.ID, nil
	}
	if !created && active != "" {
		// Stored before, and another version was activated since (a
		// rollback, say): the directory is the source of truth, and says so.
		a.log.Warn("policy directory: its version replaces the active one; to keep another, start without --policies", "dir", a.cfg.Policy.Dir, "version", v.ID, "replaced", active)
	}
	if _, err := a.Policies.Activate(ctx, policyDirActor, v.ID); err != nil {
		return "", err
	}
	a.log.Info("policy directory activated", "dir", a.cfg.Policy.Dir, "version", v.ID)
	return v.ID, nil
}

// watchPolicyDir pushes and activates the policy directory again when its
// content changes. A bundle that fails keeps the last good one live, and
// says why.
func (a *App) watchPolicyDir(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	last := a.Policies.Live().State.Active
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := policy.LoadDir(a.cfg.Policy.Dir)
		if err != nil {
			if err.Error() != lastErr { // once per problem, not every half second
				a.logWatch(last, err)
			}
			lastErr = err.Error()
			continue
		}
		lastErr = ""
		digest := b.Digest()
		if digest == last {
			continue
		}
		last = digest
		if _, err := a.applyBundle(ctx, b); err != nil && ctx.Err() == nil {
			a.logWatch(digest, err)
		}
	}
}

func (a *App) logWatch(version string, err error) {
	var failed *policy.TestsFailedError
	if errors.As(err, &failed) {
		a.log.Error("policy directory changed, but its tests fail; the active version stays", "version", version, "err", err)
		return
	}
	a.log.Error("policy directory changed, but it cannot be loaded; the active version stays", "err", err)
}
