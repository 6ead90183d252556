package cli

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/server"
	"github.com/warden-run/warden/sdk"
)

func newAgentCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "Register and manage agents"}
	cmd.AddCommand(newKeygenCmd(g), newRegisterCmd(g), newListCmd(g), newShowCmd(g),
		newStatusCmd(g, "disable", "Disable an agent: no tokens, and its live tokens are revoked at once"),
		newStatusCmd(g, "enable", "Enable an agent again (also releases a quarantine); its old tokens stay revoked"),
		newStatusCmd(g, "quarantine", "Quarantine an agent: no tokens, and its live tokens are revoked at once"),
		newStatusCmd(g, "restrict", "Mark an agent restricted: it keeps its tokens; policies see the status"),
		newStatusCmd(g, "revoke", "Revoke every live token of an agent (it may get new ones unless disabled)"),
		newRotateKeyCmd(g), newUpdateCmd(g), newDeleteCmd(g), newTaintsCmd(g), newClearTaintsCmd(g), newRiskCmd(g))
	// The commands on an existing agent complete its id from the server.
	for _, sub := range cmd.Commands() {
		switch sub.Name() {
		case "keygen", "register", "list":
		default:
			sub.ValidArgsFunction = g.completeAgents
		}
	}
	return cmd
}

// completeAgents completes an agent id from the server's registry (the
// first thousand that begin as typed), with the admin credential the
// command would use.
func (g *globals) completeAgents(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := g.admin()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var page struct {
		Agents []server.AgentView `json:"agents"`
	}
	if err := c.do(cmd.Context(), "GET", "/v1/agents?limit=1000", nil, &page); err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var out []cobra.Completion
	for _, a := range page.Agents {
		if strings.HasPrefix(a.ID, toComplete) {
			out = append(out, a.ID)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func newUpdateCmd(g *globals) *cobra.Command {
	var (
		roles, attrs, unset []string
		owner, reason       string
	)
	cmd := &cobra.Command{
		Use:   "update ID",
		Short: "Change an agent's roles, owner or attributes; its live tokens are revoked",
		Long: `Change an agent's roles (--role replaces them all), owner, or attributes
(--attr sets one, --unset-attr removes one; the others stay). The agent's
live tokens are revoked: they carry the record as it was, and it fetches
new ones. Warden's own attributes (warden.*) cannot be changed.`,
		Example: `  warden agent update ai-agent://prod/finance/trading-optimizer --role trader,reader --attr desk=rates --reason "moved desks"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u := identity.AgentUpdate{Reason: reason, Attributes: map[string]*string{}}
			for _, r := range roles {
				u.Roles = append(u.Roles, splitList(r)...)
			}
			if cmd.Flags().Changed("owner") {
				u.Owner = &owner
			}
			for _, kv := range attrs {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageError{fmt.Errorf("--attr %q: want key=value", kv)}
				}
				u.Attributes[k] = &v
			}
			for _, k := range unset {
				u.Attributes[k] = nil
			}
			if u.Roles == nil && u.Owner == nil && len(u.Attributes) == 0 {
				return usageError{errors.New("nothing to change: give --role, --owner, --attr or --unset-attr")}
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			var a server.AgentView
			if err := c.do(cmd.Context(), "PATCH", agentPath(args[0], ""), u, &a); err != nil {
				return err
			}
			return g.printAgent(a)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&roles, "role", nil, "the agent's roles, replacing the ones it has (repeat, or comma-separated)")
	fl.StringVar(&owner, "owner", "", "owning person or team")
	fl.StringArrayVar(&attrs, "attr", nil, "set attribute key=value (repeat)")
	fl.StringArrayVar(&unset, "unset-attr", nil, "remove attribute key (repeat)")
	fl.StringVar(&reason, "reason", "", "why, for the record")
	return cmd
}

func newDeleteCmd(g *globals) *cobra.Command {
	var (
		reason string
		yes    bool
	)
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "End an agent for good: tokens revoked, keys retired, disabled, recorded",
		Long: `End an agent for good: its live tokens are revoked, its keys retired now,
and it is disabled and marked deleted, so that it can be neither enabled nor
given a key again. Its record stays: the audit log still names it, and its
id is never another agent's. --yes confirms; there is no undo.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usageError{fmt.Errorf("deleting %s cannot be undone: give --yes", args[0])}
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			var a server.AgentView
			if err := c.do(cmd.Context(), "DELETE", agentPath(args[0], ""), map[string]string{"reason": reason}, &a); err != nil {
				return err
			}
			return g.printAgent(a)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the record")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm: the agent cannot be brought back")
	return cmd
}

func newKeygenCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Make an Ed25519 key pair for an agent, locally",
		Long: `Make an Ed25519 key pair: the private JWK goes to --out (mode 0600) and the
public JWK beside it (agent.jwk -> agent.pub.jwk). Nothing is sent anywhere;
register the public key with 'warden agent register --pubkey'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !strings.HasSuffix(out, ".jwk") {
				return fmt.Errorf("--out %q: the file name must end in .jwk", out)
			}
			k := sdk.GenerateKey()
			pub, err := k.WriteFiles(out)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			if g.format == "json" {
				return g.printJSON(map[string]string{"private_key": out, "public_key": pub, "kid": k.Thumbprint()})
			}
			fmt.Fprintf(g.out, "private key: %s (mode 0600, keep it with the agent)\npublic key:  %s\nkid:         %s\n", out, pub, k.Thumbprint())
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "agent.jwk", "private key file to write")
	return cmd
}

func newRegisterCmd(g *globals) *cobra.Command {
	var (
		roles  []string
		owner  string
		pubkey string
		attrs  []string
	)
	cmd := &cobra.Command{
		Use:   "register ID",
		Short: "Register an agent with its public key",
		Example: `  warden agent register ai-agent://prod/finance/trading-optimizer \
    --role trader --owner team-quant --pubkey agent.pub.jwk --attr desk=fx`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			jwk, err := os.ReadFile(pubkey)
			if err != nil {
				return fmt.Errorf("--pubkey: %w", err)
			}
			reg := identity.Registration{ID: args[0], Owner: owner, PublicKey: jwk, Attributes: map[string]string{}}
			for _, r := range roles {
				reg.Roles = append(reg.Roles, splitList(r)...)
			}
			for _, kv := range attrs {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--attr %q: want key=value", kv)
				}
				reg.Attributes[k] = v
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			var a server.AgentView
			if err := c.do(cmd.Context(), "POST", "/v1/agents", reg, &a); err != nil {
				return err
			}
			return g.printAgent(a)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&roles, "role", nil, "role (repeat, or comma-separated)")
	fl.StringVar(&owner, "owner", "", "owning person or team")
	fl.StringVar(&pubkey, "pubkey", "", "public JWK file (from warden agent keygen)")
	fl.StringArrayVar(&attrs, "attr", nil, "attribute key=value (repeat)")
	cmd.MarkFlagRequired("role")
	cmd.MarkFlagRequired("owner")
	cmd.MarkFlagRequired("pubkey")
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newListCmd(g *globals) *cobra.Command {
	var (
		domain, status, after string
		limit                 int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List agents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if domain != "" {
				q.Set("trust_domain", domain)
			}
			if status != "" {
				q.Set("status", status)
			}
			if after != "" {
				q.Set("after", after)
			}
			var page struct {
				Agents []server.AgentView `json:"agents"`
				Next   string             `json:"next"`
			}
			if err := c.do(cmd.Context(), "GET", "/v1/agents?"+q.Encode(), nil, &page); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(page)
			}
			rows := [][]string{}
			for _, a := range page.Agents {
				rows = append(rows, []string{a.ID, a.Status, strings.Join(a.Roles, ","), a.Owner, strconv.Itoa(activeKeys(a))})
			}
			if err := g.table([]string{"ID", "STATUS", "ROLES", "OWNER", "KEYS"}, rows); err != nil {
				return err
			}
			if page.Next != "" {
				fmt.Fprintf(g.out, "more: --after %s\n", page.Next)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&domain, "trust-domain", "", "only this trust domain")
	fl.StringVar(&status, "status", "", "only this status (active, restricted, quarantined, disabled)")
	fl.StringVar(&after, "after", "", "start after this agent id (paging)")
	fl.IntVar(&limit, "limit", 100, "at most this many (1 to 1000)")
	return cmd
}

func activeKeys(a server.AgentView) int {
	n := 0
	for _, k := range a.Keys {
		if k.Active {
			n++
		}
	}
	return n
}

func newShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one agent",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var a server.AgentView
			if err := c.do(cmd.Context(), "GET", agentPath(args[0], ""), nil, &a); err != nil {
				return err
			}
			return g.printAgent(a)
		},
	}
}

func (g *globals) printAgent(a server.AgentView) error {
	if g.format == "json" {
		return g.printJSON(a)
	}
	w := g.out
	fmt.Fprintf(w, "id:            %s\n", audit.Visible(a.ID))
	fmt.Fprintf(w, "trust domain:  %s\n", audit.Visible(a.TrustDomain))
	fmt.Fprintf(w, "status:        %s\n", audit.Visible(a.Status))
	fmt.Fprintf(w, "roles:         %s\n", audit.Visible(strings.Join(a.Roles, ", ")))
	fmt.Fprintf(w, "owner:         %s\n", audit.Visible(a.Owner))
	for k, v := range a.Attributes {
		fmt.Fprintf(w, "attribute:     %s=%s\n", audit.Visible(k), audit.Visible(v))
	}
	for _, k := range a.Keys {
		state := "active"
		if !k.Active {
			state = "retired"
		}
		retire := ""
		if k.RetireAt != nil {
			retire = ", retires " + fmtTime(*k.RetireAt)
		}
		fmt.Fprintf(w, "key:           %s (%s, added %s%s)\n", audit.Visible(k.KID), state, fmtTime(k.AddedAt), retire)
	}
	if a.TokensRevokedAt != nil {
		fmt.Fprintf(w, "tokens revoked: up to %s\n", fmtTime(*a.TokensRevokedAt))
	}
	fmt.Fprintf(w, "created:       %s\nupdated:       %s\n", fmtTime(a.CreatedAt), fmtTime(a.UpdatedAt))
	return nil
}

// newStatusCmd makes a command that posts {"reason"} to the agent's action
// route (disable, enable, quarantine, restrict, revoke) and shows the agent.
func newStatusCmd(g *globals, action, short string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   action + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var a server.AgentView
			if err := c.do(cmd.Context(), "POST", agentPath(args[0], "/"+action), map[string]string{"reason": reason}, &a); err != nil {
				return err
			}
			return g.printAgent(a)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the record")
	return cmd
}

func newRotateKeyCmd(g *globals) *cobra.Command {
	var (
		pubkey string
		grace  string
	)
	cmd := &cobra.Command{
		Use:   "rotate-key ID",
		Short: "Add a new public key; the agent's other keys retire after a grace period",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			jwk, err := os.ReadFile(pubkey)
			if err != nil {
				return fmt.Errorf("--pubkey: %w", err)
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			var a server.AgentView
			if err := c.do(cmd.Context(), "POST", agentPath(args[0], "/keys"), server.RotateKeyRequest{PublicKey: jwk, Grace: grace}, &a); err != nil {
				return err
			}
			return g.printAgent(a)
		},
	}
	cmd.Flags().StringVar(&pubkey, "pubkey", "", "the new public JWK file")
	cmd.Flags().StringVar(&grace, "grace", "", `how long the old keys keep working, e.g. "24h"; "0s" retires them now (default: the server's key_grace)`)
	cmd.MarkFlagRequired("pubkey")
	return cmd
}
