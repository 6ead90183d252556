package decide

// AuthReason exposes the mapping of authentication errors to reasons.
var AuthReason = authReason

// Evaluations counts the policy evaluations p has run (decisions and
// may-allow targets).
func Evaluations(p *Pipeline) int64 { return p.work.evaluations.Load() }

// Running counts the batch and may-allow requests p is working on.
func Running(p *Pipeline) int64 { return p.work.running.Load() }
