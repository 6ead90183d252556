//go:build !linux

package cli

// keepFromChildren: on this system the wrap relies on Go, which opens
// every file descriptor close-on-exec; see mcp_linux.go for what Linux
// adds.
func keepFromChildren() error { return nil }
