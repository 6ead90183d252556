// Command warden is the Warden control plane and its command line.
package main

import (
	"context"
	"os"

	"github.com/warden-run/warden/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
