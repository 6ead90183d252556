package sdk_test

import (
	"context"
	"log"
	"net/http"

	"github.com/warden-run/warden/sdk"
)

// An agent calls a service behind Warden: the client fetches and renews
// its tokens, and signs a DPoP proof for every request.
func ExampleNewClient() {
	key, err := sdk.LoadKey("agent.key") // from `warden agent keygen`, registered with `warden agent register --pubkey`
	if err != nil {
		log.Fatal(err)
	}
	c, err := sdk.NewClient("https://warden.internal:8443", "ai-agent://prod/invoice-bot", key,
		sdk.WithResource("https://orders.internal"), sdk.WithDPoP())
	if err != nil {
		log.Fatal(err)
	}
	hc := &http.Client{Transport: c.Transport(nil)}
	resp, err := hc.Get("https://orders.internal/orders/42")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
}

// A Go service is its own enforcement point: every request is decided by
// Warden before the handler sees it.
func ExampleEnforcer_Middleware() {
	e, err := sdk.NewEnforcer("https://warden.internal:8443", "pep_credential_from_warden_pep_register", "https://orders.internal",
		sdk.WithObligations("redact")) // the handler masks the fields policy names
	if err != nil {
		log.Fatal(err)
	}
	orders := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := sdk.DecisionFrom(r.Context())
		if d.Outcome == sdk.Allow && d.Obligations["redact"] != nil {
			// apply the obligation before answering
		}
		w.Write([]byte("{}"))
	})
	log.Fatal(http.ListenAndServe(":8080", e.Middleware(orders)))
}

// A planner hands one task to a worker: the worker's token carries the
// task, and what the worker reads taints that task's scope.
func ExampleClient_DelegateTask() {
	key, _ := sdk.LoadKey("planner.key")
	planner, _ := sdk.NewClient("https://warden.internal:8443", "ai-agent://prod/planner", key, sdk.WithResource("https://gw.internal/mcp"))
	own, err := planner.Token(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	worker, err := planner.DelegateTask(context.Background(), own.AccessToken, "ai-agent://prod/worker", "invoice-2291")
	if err != nil {
		log.Fatal(err)
	}
	_ = worker.AccessToken // handed to the worker, never logged
}
