package filelog

// Record and CheckpointRecord expose the file formats to tests, which
// tamper with logs the way an attacker with the files could.
var (
	Record           = record
	CheckpointRecord = checkpointRecord
)
