package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// SharedSettings are the settings every replica on one store must have
// alike: a token one replica issues must verify at every other, with the
// same DPoP requirement, and the audit log has one name. (The master key,
// which replicas must also share, is bound by its fingerprint: see
// BindMasterKey.)
type SharedSettings struct {
	Issuer       string                  `json:"issuer"`
	Audience     string                  `json:"audience"`
	TrustDomains map[string]SharedDomain `json:"trust_domains"`
	AuditOrigin  string                  `json:"audit_origin"`
	// TaintsExpireAfter is taints.expire_after: the replicas sweep the one
	// table of taints, so the shortest would win. Empty in a record made
	// before it was shared, until the next replica to start fills it in.
	TaintsExpireAfter string `json:"taints_expire_after,omitempty"`
}

// SharedDomain is what replicas must agree on about a trust domain.
type SharedDomain struct {
	RequireDPoP bool `json:"require_dpop"`
}

// sharedRecord is SharedSettings as the store keeps them.
type sharedRecord struct {
	Version int `json:"version"`
	SharedSettings
	RecordedAt time.Time `json:"recorded_at"`
}

const metaSharedSettings = "shared_settings"

// UpdateSharedSettingsFlag is how an operator changes the shared settings
// deliberately; the refusal names it.
const UpdateSharedSettingsFlag = "--update-shared-settings"

// ErrSharedSettings is wrapped by the refusal of a replica whose shared
// settings differ from the deployment's.
var ErrSharedSettings = errors.New("this replica's settings differ from the deployment's")

// BindSharedSettings records s as the deployment's shared settings when the
// store has none (the first replica to start), and otherwise refuses to go
// on with settings that differ, naming each difference. With update, it
// replaces the recorded settings with s instead, and records who did it in
// the admin events (and so the audit log).
func BindSharedSettings(ctx context.Context, st interface {
	store.MetaStore
	store.EventStore
}, s SharedSettings, update bool, now time.Time) error {
	mine, err := json.Marshal(sharedRecord{Version: 1, SharedSettings: s, RecordedAt: now.UTC()})
	if err != nil {
		return err
	}
	if _, err := st.PutMetaIfAbsent(ctx, metaSharedSettings, mine); err != nil {
		return fmt.Errorf("shared settings: %w", err)
	}
	raw, err := st.Meta(ctx, metaSharedSettings)
	if err != nil {
		return fmt.Errorf("shared settings: %w", err)
	}
	var rec sharedRecord
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Version != 1 {
		return fmt.Errorf("shared settings: the record in the store is not one this version of Warden reads")
	}
	diffs := rec.SharedSettings.differences(s)
	switch {
	case len(diffs) == 0 && rec.TaintsExpireAfter == "" && s.TaintsExpireAfter != "":
		// Recorded before the setting was shared: this replica's is
		// recorded now, and the next replica's compared with it.
		rec.TaintsExpireAfter = s.TaintsExpireAfter
		filled, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		swapped, err := st.SwapMeta(ctx, metaSharedSettings, raw, filled)
		if err != nil {
			return fmt.Errorf("shared settings: %w", err)
		}
		if !swapped { // another replica changed the record meanwhile: compare with it
			return BindSharedSettings(ctx, st, s, update, now)
		}
		return nil
	case len(diffs) == 0:
		return nil
	case !update:
		return fmt.Errorf("%w (recorded by the first replica to start on this store, %s):\n  %s\n"+
			"Start this replica with the deployment's settings (the same warden.yaml, --issuer and audit.origin as the others). "+
			"To change them deliberately, stop every replica, start one with %s and the new settings, then the others with the same; "+
			"tokens issued under an earlier issuer are refused from then on.",
			ErrSharedSettings, rec.RecordedAt.Format(time.RFC3339), strings.Join(diffs, "\n  "), UpdateSharedSettingsFlag)
	}
	swapped, err := st.SwapMeta(ctx, metaSharedSettings, raw, mine)
	if err != nil {
		return fmt.Errorf("shared settings: %w", err)
	}
	if !swapped {
		return fmt.Errorf("shared settings: another replica changed them meanwhile; start again")
	}
	detail, _ := json.Marshal(map[string]any{"before": rec.SharedSettings, "after": s, "changes": diffs})
	if err := st.RecordEvent(ctx, store.Event{Time: store.Time(now), Actor: "system:" + UpdateSharedSettingsFlag,
		Action: "settings.update", Target: metaSharedSettings, Detail: detail}); err != nil {
		return fmt.Errorf("shared settings were changed but the change was not recorded: %w", err)
	}
	return nil
}

// differences lists, for an operator, each setting in which s (this
// replica's) differs from d (the deployment's).
func (d SharedSettings) differences(s SharedSettings) []string {
	var out []string
	str := func(name, deployment, mine string) {
		if deployment != mine {
			out = append(out, fmt.Sprintf("%s: the deployment has %q, this replica %q", name, deployment, mine))
		}
	}
	str("identity.issuer", d.Issuer, s.Issuer)
	str("identity.audience", d.Audience, s.Audience)
	str("audit.origin", d.AuditOrigin, s.AuditOrigin)
	if d.TaintsExpireAfter != "" {
		str("taints.expire_after", d.TaintsExpireAfter, s.TaintsExpireAfter)
	}
	for _, name := range slices.Sorted(maps.Keys(d.TrustDomains)) {
		mine, ok := s.TrustDomains[name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("identity.trust_domains: the deployment declares %q, this replica does not", name))
		case mine.RequireDPoP != d.TrustDomains[name].RequireDPoP:
			out = append(out, fmt.Sprintf("identity.trust_domains.%s.require_dpop: the deployment has %t, this replica %t",
				name, d.TrustDomains[name].RequireDPoP, mine.RequireDPoP))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.TrustDomains)) {
		if _, ok := d.TrustDomains[name]; !ok {
			out = append(out, fmt.Sprintf("identity.trust_domains: this replica declares %q, the deployment does not", name))
		}
	}
	return out
}
