package cli

import "time"

// SetAnswerTimeout sets how long the CLI waits for an answer to begin, and
// returns a function that puts it back.
func SetAnswerTimeout(d time.Duration) func() {
	old := answerTimeout
	answerTimeout = d
	return func() { answerTimeout = old }
}
