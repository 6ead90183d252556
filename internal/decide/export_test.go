package decide

// AuthReason exposes the mapping of authentication errors to reasons.
var AuthReason = authReason
