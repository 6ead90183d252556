package policy

import (
	"strings"
	"testing"
)

func TestDiffFiles(t *testing.T) {
	t.Parallel()
	a := map[string]string{"same.rego": "x\n", "gone.rego": "a\nb\n", "policy.rego": "package p\nallow := true\n"}
	b := map[string]string{"same.rego": "x\n", "new.rego": "c\n", "policy.rego": "package p\n\nallow := false\n"}
	got := DiffFiles(a, b)
	want := []struct {
		path, status   string
		added, removed int
	}{{"gone.rego", "D", 0, 2}, {"new.rego", "A", 1, 0}, {"policy.rego", "M", 2, 1}}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i, w := range want {
		g := got[i]
		if g.Path != w.path || g.Status != w.status || g.Added != w.added || g.Removed != w.removed || !g.Exact {
			t.Errorf("%d: %+v, want %+v", i, g, w)
		}
	}
	// Past the budget a file is not compared: all removed, all added.
	big := strings.Repeat("line\n", 2500)
	got = DiffFiles(map[string]string{"a": big}, map[string]string{"a": big + "more\n"})
	if len(got) != 1 || got[0].Exact || got[0].Added != 2501 || got[0].Removed != 2500 {
		t.Fatalf("too long: %+v", got[0].Path)
	}
}
