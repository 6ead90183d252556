package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/archive"
	"github.com/warden-run/warden/internal/audit/filelog"
	"github.com/warden-run/warden/internal/durable"
)

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read, prove and verify the tamper-evident audit log"}
	cmd.AddCommand(newAuditVerifyCmd(g), newAuditTailCmd(g), newAuditExportCmd(g), newAuditProofCmd(g), newAuditLineageCmd(g), newAuditKeyCmd(g))
	return cmd
}

// get fetches path with the admin credential, or without one when public.
func (c *adminClient) get(ctx context.Context, path string, public bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if !public {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &unreachableError{server: c.base, err: err}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Code == "" {
			return nil, fmt.Errorf("HTTP %d from %s", resp.StatusCode, path)
		}
		return nil, e
	}
	return resp, nil
}

func (c *adminClient) getBytes(ctx context.Context, path string, public bool) ([]byte, error) {
	resp, err := c.get(ctx, path, public)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

func newAuditKeyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "key",
		Short:   "Print the public key that verifies the log's checkpoints",
		Example: `  warden audit key > checkpoint.pub`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.publicClient()
			b, err := c.getBytes(cmd.Context(), "/v1/audit/checkpoint/key", true)
			if err != nil {
				return err
			}
			_, err = g.out.Write(b)
			return err
		},
	}
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var from, dir, archiveDir, keyFile, witness string
	var verify func(*cobra.Command) error
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify the whole log against its signed checkpoints",
		Long: `Verify the whole log: indexes without gaps or repeats, each entry chained to the
one before, and every checkpoint signed by the log's key and committing to
exactly the entries before it. On failure it names the first bad index and
exits with status 1; when it cannot verify at all (the log or the key cannot
be read), it exits with status 2.

Where the log comes from:
  (default)       the server, through the admin API
  --from FILE     an export made with 'warden audit export' (offline)
  --dir DIR       a log directory of the embedded store, read-only (offline);
                  with --archive DIR, where its archived segments went

The key: --key FILE (as 'warden audit key' prints it); without it, the server's.

--witness FILE remembers the newest checkpoint that verified and, next time,
checks that the log still reaches it with the same root: a log rewound or
rewritten since then fails, even if its checkpoints were removed.`,
		Args: func(cmd *cobra.Command, args []string) error {
			return cannotRun(g, cobra.NoArgs(cmd, args))
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return cannotRun(g, verify(cmd))
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cannotRun(g, err) })
	verify = func(cmd *cobra.Command) error {
		if from != "" && dir != "" {
			return errors.New("give --from or --dir, not both")
		}
		if archiveDir != "" && dir == "" {
			return errors.New("--archive goes with --dir: the server reads its archive itself")
		}
		ctx := cmd.Context()
		var vkey string
		if keyFile != "" {
			b, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			vkey = string(b)
		} else {
			if from != "" || dir != "" {
				return errors.New("offline verification needs --key: the log's verifier key, from 'warden audit key'")
			}
			b, err := g.publicClient().getBytes(ctx, "/v1/audit/checkpoint/key", true)
			if err != nil {
				return err
			}
			vkey = string(b)
		}
		cv, err := audit.NewCheckpointVerifier(vkey)
		if err != nil {
			return err
		}
		var trusted *audit.Checkpoint
		if witness != "" {
			if b, err := os.ReadFile(witness); err == nil {
				c, err := cv.Parse(b)
				if err != nil {
					return fmt.Errorf("--witness %s: %w", witness, err)
				}
				trusted = &c
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("--witness: %w", err)
			}
		}
		var src audit.Source
		switch {
		case from != "":
			f, err := os.Open(from)
			if err != nil {
				return err
			}
			defer f.Close()
			src = audit.ReadExport(f)
		case dir != "":
			var st archive.Store
			if archiveDir != "" {
				if _, err := os.Stat(archiveDir); err != nil {
					return fmt.Errorf("--archive: %w", err)
				}
				st = &archive.Dir{Path: archiveDir}
			}
			if src, err = filelog.ReadItemsFrom(dir, st); err != nil {
				return err
			}
		default:
			c, err := g.admin()
			if err != nil {
				return err
			}
			resp, err := c.get(ctx, "/v1/audit/export", false)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			src = audit.ReadExport(resp.Body)
		}
		start := time.Now()
		r, err := audit.Verify(src, cv, trusted)
		if err != nil {
			return err
		}
		took := time.Since(start)
		if r.OK() && witness != "" && r.Latest != nil {
			if err := saveWitness(witness, src, r); err != nil {
				return err
			}
		}
		if g.format == "json" {
			out := map[string]any{"ok": r.OK(), "entries": r.Entries, "checkpoints": r.Checkpoints,
				"uncovered": r.Uncovered, "first_bad": r.FirstBad, "problem": r.Problem, "seconds": took.Seconds()}
			if r.Latest != nil {
				out["latest_size"], out["latest_root"] = r.Latest.Size, base64.StdEncoding.EncodeToString(r.Latest.Root)
			}
			if err := g.printJSON(out); err != nil {
				return err
			}
		} else if r.OK() {
			fmt.Fprintf(g.out, "OK: %d entries, %d checkpoints; latest checkpoint: size %d, root %s\n",
				r.Entries, r.Checkpoints, r.Latest.Size, base64.StdEncoding.EncodeToString(r.Latest.Root))
			if r.Uncovered > 0 {
				fmt.Fprintf(g.out, "%d newer entries are intact but not yet under a checkpoint\n", r.Uncovered)
			}
			if keyFile == "" {
				// The key came from the server checked: a server that
				// rewrote its log could have signed it with a key of its own.
				fmt.Fprintf(g.errOut, "note: checked against the key the server gave; keep its key ('warden audit key') and pass --key to check against one you hold\n")
			}
		} else {
			fmt.Fprintf(g.out, "FAILED: first bad index %d: %s\n", r.FirstBad, audit.Visible(r.Problem))
		}
		if !r.OK() {
			return exitError(1)
		}
		return nil
	}
	fl := cmd.Flags()
	fl.StringVar(&from, "from", "", "verify this export (JSON lines) instead of the server's log")
	fl.StringVar(&dir, "dir", "", "verify this log directory (the embedded store's <data>/audit) instead of the server's log")
	fl.StringVar(&archiveDir, "archive", "", "with --dir: the directory its archived segments were moved to (audit.archive.dir; for an S3 archive, verify through the server)")
	fl.StringVar(&keyFile, "key", "", "the checkpoint verifier key file (default: fetched from the server)")
	fl.StringVar(&witness, "witness", "", "file keeping the newest verified checkpoint, checked and updated on every run")
	return cmd
}

// saveWitness keeps the newest verified checkpoint's signed note.
func saveWitness(path string, _ audit.Source, r *audit.Report) error {
	if r.LatestSigned == nil {
		return nil
	}
	dir, name := splitPath(path)
	return durable.WriteAtomic(dir, name, r.LatestSigned)
}

func splitPath(p string) (string, string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i+1], p[i+1:]
}

func newAuditExportCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the whole log, with its checkpoints, as JSON lines",
		Example: `  warden audit export --format jsonl > log.jsonl
  warden audit key > checkpoint.pub
  warden audit verify --from log.jsonl --key checkpoint.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "jsonl" {
				return fmt.Errorf("--format %q: only jsonl", format)
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			resp, err := c.get(cmd.Context(), "/v1/audit/export", false)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.Copy(g.out, resp.Body)
			return err
		},
	}
	// The root's --format (text|json) is for reports; export has its own.
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl: one entry or checkpoint per line")
	return cmd
}

func newAuditTailCmd(g *globals) *cobra.Command {
	var (
		follow               bool
		n                    int
		agent, kind, outcome string
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Show the newest entries; with -f, keep showing new ones",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			q := url.Values{}
			for k, v := range map[string]string{"agent": agent, "kind": kind, "outcome": outcome} {
				if v != "" {
					q.Set(k, v)
				}
			}
			// Without filters the last n entries are the last n indexes; with
			// them, the whole log is read and the last n matches kept.
			after := int64(-1)
			if len(q) == 0 {
				_, _, size, err := fetchEntries(ctx, c, q, -1, 1)
				if err != nil {
					return err
				}
				after = max(size-int64(n)-1, -1)
			}
			var window []json.RawMessage
			last := after
			for {
				page, next, size, err := fetchEntries(ctx, c, q, after, 1000)
				if err != nil {
					return err
				}
				for _, e := range page {
					window = append(window, e)
					if len(window) > n {
						window = window[1:]
					}
				}
				if len(page) > 0 {
					last = entryIndex(page[len(page)-1])
				}
				if next < 0 {
					// The server read everything before size: with filters,
					// the entries after the last match need no second look.
					last = max(last, size-1)
					break
				}
				after = next
			}
			if g.format != "json" {
				fmt.Fprintf(g.out, entryColumns, "INDEX", "TIME", "KIND", "OUTCOME", "WHO", "ACTION", "TARGET", "REASONS")
			}
			for _, e := range window {
				g.printEntry(e)
			}
			for follow {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
				for {
					page, next, size, err := fetchEntries(ctx, c, q, last, 1000)
					if err != nil {
						return err
					}
					for _, e := range page {
						g.printEntry(e)
						last = entryIndex(e)
					}
					if next < 0 {
						last = max(last, size-1)
						break
					}
					last = next
				}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new entries")
	fl.IntVarP(&n, "lines", "n", 20, "how many of the newest entries to show first")
	fl.StringVar(&agent, "agent", "", "only this agent's entries")
	fl.StringVar(&kind, "kind", "", "only this kind: decision, admin, response, policy")
	fl.StringVar(&outcome, "outcome", "", "only this outcome, such as allow or deny")
	return cmd
}

func entryIndex(raw json.RawMessage) int64 {
	var e struct{ Index int64 }
	json.Unmarshal(raw, &e)
	return e.Index
}

// fetchEntries reads one page after the index after: the entries, where the
// next page starts (-1 at the end) and the log's size.
func fetchEntries(ctx context.Context, c *adminClient, q url.Values, after int64, limit int) ([]json.RawMessage, int64, int64, error) {
	q = cloneValues(q)
	q.Set("after", strconv.FormatInt(after, 10))
	q.Set("limit", strconv.Itoa(limit))
	var page struct {
		Entries []json.RawMessage `json:"entries"`
		Next    string            `json:"next"`
		Size    int64             `json:"size"`
	}
	if err := c.do(ctx, "GET", "/v1/audit/entries?"+q.Encode(), nil, &page); err != nil {
		return nil, 0, 0, err
	}
	next := int64(-1)
	if page.Next != "" {
		next, _ = strconv.ParseInt(page.Next, 10, 64)
	}
	return page.Entries, next, page.Size, nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// entryColumns lays out an entry in text: fixed widths, so that the
// lines -f adds later line up with the first.
const entryColumns = "%7s  %-20s  %-8s  %-7s  %-34s  %-18s  %-28s  %s\n"

func (g *globals) printEntry(raw json.RawMessage) {
	if g.format == "json" {
		g.out.Write(append(bytes.Clone(audit.VisibleJSON(raw)), '\n'))
		return
	}
	var e audit.Entry
	json.Unmarshal(raw, &e)
	who := e.Agent
	if who == "" {
		who = e.Actor
	}
	target := e.Target
	if target == "" && len(e.Resource) > 0 {
		var r struct{ Kind, ID string }
		if json.Unmarshal(e.Resource, &r) == nil && r.ID != "" {
			target = r.ID
		} else {
			target = string(e.Resource)
		}
	}
	fmt.Fprintf(g.out, entryColumns, strconv.FormatInt(e.Index, 10), e.Time.UTC().Format(time.RFC3339),
		audit.Visible(string(e.Kind)), audit.Visible(e.Outcome), orDash(audit.Visible(who)), audit.Visible(e.Action),
		orDash(audit.Visible(target)), orDash(audit.Visible(strings.Join(e.Reasons, ","))))
}

func newAuditProofCmd(g *globals) *cobra.Command {
	var index int64
	cmd := &cobra.Command{
		Use:   "proof",
		Short: "Print an inclusion proof of one entry against the latest checkpoint",
		Long: `Print an inclusion proof (RFC 6962) of entry --index against the latest signed
checkpoint, with the checkpoint itself. The proof is checked here before it is
printed, with the server's key; anyone can check it again with the
transparency-dev/merkle proof package, the entry and the checkpoint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if index < 0 {
				return errors.New("--index is required")
			}
			ctx := cmd.Context()
			c, err := g.admin()
			if err != nil {
				return err
			}
			vkey, err := c.getBytes(ctx, "/v1/audit/checkpoint/key", true)
			if err != nil {
				return err
			}
			cv, err := audit.NewCheckpointVerifier(string(vkey))
			if err != nil {
				return err
			}
			signed, err := c.getBytes(ctx, "/v1/audit/checkpoint", true)
			if err != nil {
				return err
			}
			cp, err := cv.Parse(signed)
			if err != nil {
				return err
			}
			p, err := c.inclusion(ctx, index, &cp)
			if err != nil {
				return err
			}
			// The entry as a string: its exact bytes are what the leaf hash covers.
			out := map[string]any{"index": index, "size": cp.Size, "leaf_hash": p.LeafHash, "entry": string(p.Entry),
				"proof": p.Proof, "checkpoint": string(signed), "verified": true}
			if g.format == "json" {
				return g.printJSON(out)
			}
			fmt.Fprintf(g.out, "entry %d is in the log of size %d (proof verified)\n\nentry:\n%s\n\nproof (%d hashes):\n", index, cp.Size, audit.VisibleJSON(p.Entry), len(p.Proof))
			for _, h := range p.Proof {
				fmt.Fprintln(g.out, "  "+h)
			}
			fmt.Fprintf(g.out, "\ncheckpoint:\n%s", signed)
			return nil
		},
	}
	cmd.Flags().Int64Var(&index, "index", -1, "the entry's index")
	return cmd
}

// inclusionProof is an entry and its inclusion proof, as the server gives
// them.
type inclusionProof struct {
	Index    int64           `json:"index"`
	Size     int64           `json:"size"`
	LeafHash string          `json:"leaf_hash"`
	Entry    json.RawMessage `json:"entry"`
	Proof    []string        `json:"proof"`
}

// inclusion fetches entry index with its proof against checkpoint cp, and
// verifies it here.
func (c *adminClient) inclusion(ctx context.Context, index int64, cp *audit.Checkpoint) (*inclusionProof, error) {
	var p inclusionProof
	path := fmt.Sprintf("/v1/audit/proof/inclusion?index=%d&size=%d", index, cp.Size)
	if err := c.do(ctx, "GET", path, nil, &p); err != nil {
		return nil, err
	}
	if err := p.verify(cp); err != nil {
		return nil, err
	}
	return &p, nil
}

// verify checks the proof of p's entry against checkpoint cp.
func (p *inclusionProof) verify(cp *audit.Checkpoint) error {
	if p.Size != cp.Size {
		return fmt.Errorf("the proof of entry %d is for a log of size %d, not the checkpoint's %d", p.Index, p.Size, cp.Size)
	}
	hashes := make([][]byte, len(p.Proof))
	for i, h := range p.Proof {
		var err error
		if hashes[i], err = base64.StdEncoding.DecodeString(h); err != nil {
			return fmt.Errorf("proof hash %d: %w", i, err)
		}
	}
	h := rfc6962.DefaultHasher
	if err := proof.VerifyInclusion(h, uint64(p.Index), uint64(cp.Size), h.HashLeaf(p.Entry), hashes, cp.Root); err != nil {
		return fmt.Errorf("the server's proof of entry %d does not verify: %w", p.Index, err)
	}
	return nil
}

// publicClient reaches the server without an admin credential.
func (g *globals) publicClient() *adminClient {
	return &adminClient{base: strings.TrimSuffix(g.server, "/"), http: newHTTP(answerTimeout)}
}
