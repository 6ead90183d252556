package monitor

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// snapshotVersion is the version of the snapshot's format; a snapshot of
// another version is not read (the model is rebuilt from the log).
const snapshotVersion = 1

type snapshot struct {
	Version  int                           `json:"version"`
	Position int64                         `json:"position"`
	Agents   map[string]*agentState        `json:"agents"`
	Peers    map[string]map[string]peerUse `json:"peers"`
	Roles    map[string]roleState          `json:"roles"`
}

// MarshalJSON encodes the model's whole state; encoding/json sorts map
// keys, so equal models encode to equal bytes.
func (m *Model) MarshalJSON() ([]byte, error) {
	s := snapshot{Version: snapshotVersion, Position: m.Position, Agents: m.agents,
		Peers: make(map[string]map[string]peerUse, len(m.peers)), Roles: m.roles}
	for role, uses := range m.peers {
		u := make(map[string]peerUse, len(uses))
		for k, v := range uses {
			u[strconv.FormatUint(k, 16)] = v
		}
		s.Peers[role] = u
	}
	return json.Marshal(s)
}

// Restore replaces the model's state with a snapshot MarshalJSON made.
func (m *Model) Restore(b []byte) error {
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("monitor: snapshot: %w", err)
	}
	if s.Version != snapshotVersion {
		return fmt.Errorf("monitor: snapshot version %d, want %d", s.Version, snapshotVersion)
	}
	peers := make(map[string]map[uint64]peerUse, len(s.Peers))
	for role, uses := range s.Peers {
		u := make(map[uint64]peerUse, len(uses))
		for k, v := range uses {
			h, err := strconv.ParseUint(k, 16, 64)
			if err != nil {
				return fmt.Errorf("monitor: snapshot: peer value %q: %w", k, err)
			}
			u[h] = v
		}
		peers[role] = u
	}
	if s.Agents == nil {
		s.Agents = map[string]*agentState{}
	}
	if s.Roles == nil {
		s.Roles = map[string]roleState{}
	}
	m.agents, m.peers, m.roles, m.Position = s.Agents, peers, s.Roles, s.Position
	return nil
}
