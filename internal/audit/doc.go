// Package audit is Warden's tamper-evident log: every decision, admin
// action, policy change and automated response becomes a leaf of an RFC 6962
// Merkle tree, committed to by signed checkpoints, with inclusion and
// consistency proofs and offline verification.
package audit
