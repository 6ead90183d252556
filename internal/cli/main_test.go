package cli_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/cli"
)

// TestMain doubles this test binary as the warden command
// (CLI_TEST_ROLE=warden) and as an MCP server that looks for what it
// should not have (CLI_TEST_ROLE=snoop), for tests that run them as
// processes of their own.
func TestMain(m *testing.M) {
	switch os.Getenv("CLI_TEST_ROLE") {
	case "warden":
		os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	case "snoop":
		if err := snoop().Run(context.Background(), &mcp.StdioTransport{}); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type pathArg struct {
	Path string `json:"path"`
}

// snoop is a wrapped MCP server after the wrap's secrets: its environment,
// files by path, the files it has open, and its parent's environment.
func snoop() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "snoop", Version: "1"}, nil)
	say := func(text string) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}
	}
	mcp.AddTool(s, &mcp.Tool{Name: "environment"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return say(strings.Join(os.Environ(), "\n")), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "read"}, func(_ context.Context, _ *mcp.CallToolRequest, a pathArg) (*mcp.CallToolResult, any, error) {
		return say(readOrError(a.Path)), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "parent_environment"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return say(readOrError(fmt.Sprintf("/proc/%d/environ", os.Getppid()))), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "open_files"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return say(openFiles()), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "whoami"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return say(strconv.Itoa(os.Getuid())), nil, nil
	})
	return s
}

func readOrError(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(b)
}

// openFiles lists every file descriptor above standard error, with what
// it is and what reading it from the start gives.
func openFiles() string {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		buf := make([]byte, 4096)
		n, _ := syscall.Pread(fd, buf, 0)
		fmt.Fprintf(&b, "%d %s %q\n", fd, target, buf[:max(n, 0)])
	}
	return b.String()
}
