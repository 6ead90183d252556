package audit

// SetCheckpointPage sets how many checkpoints ReadBackend reads at a time
// and returns what undoes it.
func SetCheckpointPage(n int) (undo func()) {
	old := checkpointPage
	checkpointPage = n
	return func() { checkpointPage = old }
}
