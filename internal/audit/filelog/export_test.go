package filelog

// Record and CheckpointRecord expose the file formats to tests, which
// tamper with logs the way an attacker with the files could.
var (
	Record           = record
	CheckpointRecord = checkpointRecord
)

// HeldOffsets is how many records' places the log keeps in memory.
func HeldOffsets(l *Log) int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.active == nil {
		return 0
	}
	return len(l.active.offsets)
}

// HeldCheckpoints is how many checkpoints the log keeps in memory.
func HeldCheckpoints(l *Log) int {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	if l.latest == nil {
		return 0
	}
	return 1
}

// OpenSegmentFiles is how many segment files the log holds open.
func OpenSegmentFiles(l *Log) int {
	n := l.files.len()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.active != nil {
		n++
	}
	return n
}

// MaxOpenSealed is how many sealed segments the log keeps open at most.
const MaxOpenSealed = maxOpenSealed
