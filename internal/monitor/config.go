package monitor

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Signal names: hard signals count from an agent's first minute; the
// others need the agent's baseline and count once it has learnt.
const (
	SignalDenyBurst      = "deny_burst"
	SignalAuthFailures   = "auth_failures"
	SignalTaintedEgress  = "tainted_egress"
	SignalNotPermitted   = "not_permitted"
	SignalCrossDomain    = "cross_domain"
	SignalRateSpike      = "rate_spike"
	SignalNewResource    = "new_resource"
	SignalNewAction      = "new_action"
	SignalNewArgKey      = "new_arg_key"
	SignalRareTransition = "rare_transition"
	SignalLoop           = "loop"
	SignalErratic        = "erratic"
	SignalDenyRatio      = "deny_ratio"
	SignalOffHours       = "off_hours"
	SignalNewNetwork     = "new_network"
	SignalPeerDrift      = "peer_drift"
	SignalDataVolume     = "data_volume"
)

// Signals is every signal, hard ones first.
var Signals = []string{
	SignalDenyBurst, SignalAuthFailures, SignalTaintedEgress, SignalNotPermitted, SignalCrossDomain,
	SignalRateSpike, SignalNewResource, SignalNewAction, SignalNewArgKey, SignalRareTransition,
	SignalLoop, SignalErratic, SignalDenyRatio, SignalOffHours, SignalNewNetwork, SignalPeerDrift, SignalDataVolume,
}

// hard reports whether a signal counts while the agent learns.
func hard(signal string) bool {
	return slices.Index(Signals, signal) < slices.Index(Signals, SignalRateSpike)
}

// Levels of risk.
const (
	LevelLow      = "low"
	LevelMedium   = "medium"
	LevelHigh     = "high"
	LevelCritical = "critical"
)

// Burst is a count of events within a window.
type Burst struct {
	Count  int           `yaml:"count"`
	Window time.Duration `yaml:"window"`
}

// Config configures the model. The zero value of a field means its
// default (Defaults); docs/monitoring.md says why each default is what it is.
type Config struct {
	// An agent learns until it has LearnEvents decisions and its first is
	// LearnFor old; meanwhile only hard signals count.
	LearnFor    time.Duration `yaml:"learn_for"`
	LearnEvents int           `yaml:"learn_events"`
	// Forget drops a resource, action, argument key, network or
	// transition the agent has not used for this long, and is the horizon
	// of its hours of activity.
	Forget time.Duration `yaml:"forget"`
	// HalfLife is how fast the score falls once signals stop firing.
	HalfLife time.Duration `yaml:"half_life"`
	// Weights is the score each firing of a signal adds; 0 switches the
	// signal off.
	Weights map[string]float64 `yaml:"weights"`
	// Levels are the scores at which the level becomes medium, high and
	// critical.
	Levels LevelScores `yaml:"levels"`
	// DenyBurst and AuthFailures are hard signals' thresholds.
	DenyBurst    Burst `yaml:"deny_burst"`
	AuthFailures Burst `yaml:"auth_failures"`
	// RateZ is how many standard deviations above its usual calls per
	// active minute an agent's minute must be to fire rate_spike, and
	// RateMin the fewest calls in that minute.
	RateZ   float64 `yaml:"rate_z"`
	RateMin int     `yaml:"rate_min"`
	// VolumeMin is the fewest bytes relayed to the agent in one interval
	// that can fire data_volume, however far above its usual.
	VolumeMin int64 `yaml:"volume_min"`
	// RareShare sets how much history a rare move needs: a move between
	// two resources is rare when it was never made, though the agent has
	// left the first and reached the second at least 3/RareShare times
	// each (so a move of that share would have been seen three times).
	RareShare float64 `yaml:"rare_share"`
	// MaxAgents bounds the agents the model keeps; past it, the agent
	// seen longest ago is forgotten.
	MaxAgents int `yaml:"max_agents"`
}

// LevelScores are the scores at which each level begins.
type LevelScores struct {
	Medium   float64 `yaml:"medium"`
	High     float64 `yaml:"high"`
	Critical float64 `yaml:"critical"`
}

// Defaults are the model's settings when a field is left out.
var Defaults = Config{
	LearnFor:    24 * time.Hour,
	LearnEvents: 200,
	Forget:      14 * 24 * time.Hour,
	HalfLife:    15 * time.Minute,
	Weights: map[string]float64{
		SignalDenyBurst:      25,
		SignalAuthFailures:   25,
		SignalTaintedEgress:  30,
		SignalNotPermitted:   10,
		SignalCrossDomain:    30,
		SignalRateSpike:      20,
		SignalNewResource:    10,
		SignalNewAction:      10,
		SignalNewArgKey:      4,
		SignalRareTransition: 6,
		SignalLoop:           20,
		SignalErratic:        15,
		SignalDenyRatio:      20,
		SignalOffHours:       12,
		SignalNewNetwork:     20,
		SignalPeerDrift:      8,
		SignalDataVolume:     20,
	},
	Levels:       LevelScores{Medium: 25, High: 50, Critical: 75},
	DenyBurst:    Burst{Count: 10, Window: time.Minute},
	AuthFailures: Burst{Count: 3, Window: 5 * time.Minute},
	RateZ:        4,
	RateMin:      30,
	RareShare:    0.01,
	VolumeMin:    1 << 20,
	MaxAgents:    20_000,
}

// withDefaults fills c's zero fields from Defaults and checks the result.
func (c Config) withDefaults() (Config, error) {
	d := Defaults
	if c.LearnFor == 0 {
		c.LearnFor = d.LearnFor
	}
	if c.LearnEvents == 0 {
		c.LearnEvents = d.LearnEvents
	}
	if c.Forget == 0 {
		c.Forget = d.Forget
	}
	if c.HalfLife == 0 {
		c.HalfLife = d.HalfLife
	}
	w := make(map[string]float64, len(d.Weights))
	for k, v := range d.Weights {
		w[k] = v
	}
	for k, v := range c.Weights {
		if _, ok := d.Weights[k]; !ok {
			return c, fmt.Errorf("monitor.weights: unknown signal %q (known: %v)", k, Signals)
		}
		if v < 0 || v > 100 {
			return c, fmt.Errorf("monitor.weights.%s: %v is outside 0 to 100", k, v)
		}
		w[k] = v
	}
	c.Weights = w
	if c.Levels == (LevelScores{}) {
		c.Levels = d.Levels
	}
	if !(0 < c.Levels.Medium && c.Levels.Medium < c.Levels.High && c.Levels.High < c.Levels.Critical && c.Levels.Critical <= 100) {
		return c, errors.New("monitor.levels: want 0 < medium < high < critical <= 100")
	}
	if c.DenyBurst == (Burst{}) {
		c.DenyBurst = d.DenyBurst
	}
	if c.AuthFailures == (Burst{}) {
		c.AuthFailures = d.AuthFailures
	}
	for name, b := range map[string]Burst{"deny_burst": c.DenyBurst, "auth_failures": c.AuthFailures} {
		if b.Count < 1 || b.Count > 1000 || b.Window <= 0 {
			return c, fmt.Errorf("monitor.%s: want a count from 1 to 1000 and a positive window", name)
		}
	}
	if c.RateZ == 0 {
		c.RateZ = d.RateZ
	}
	if c.RateMin == 0 {
		c.RateMin = d.RateMin
	}
	if c.RareShare == 0 {
		c.RareShare = d.RareShare
	}
	if c.MaxAgents == 0 {
		c.MaxAgents = d.MaxAgents
	}
	if c.VolumeMin == 0 {
		c.VolumeMin = d.VolumeMin
	}
	switch {
	case c.LearnFor < 0, c.LearnEvents < 0, c.Forget < 0, c.HalfLife < 0:
		return c, errors.New("monitor: learn_for, learn_events, forget and half_life cannot be negative")
	case c.RateZ < 0, c.RateMin < 0, c.RareShare < 0 || c.RareShare >= 1, c.MaxAgents < 0, c.VolumeMin < 0:
		return c, errors.New("monitor: rate_z, rate_min and volume_min cannot be negative, rare_share is from 0 to 1, max_agents positive")
	}
	return c, nil
}

// level names the level of score.
func (c *Config) level(score int) string {
	s := float64(score)
	switch {
	case s >= c.Levels.Critical:
		return LevelCritical
	case s >= c.Levels.High:
		return LevelHigh
	case s >= c.Levels.Medium:
		return LevelMedium
	}
	return LevelLow
}
