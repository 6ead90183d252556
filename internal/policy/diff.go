package policy

import (
	"slices"
	"strings"
)

// DiffLine is one line of a diff: Op is ' ' (in both), '+' (added) or
// '-' (removed).
type DiffLine struct {
	Op   byte
	Text string
}

// FileDiff is one file that differs between two bundles.
type FileDiff struct {
	Path    string `json:"path"`
	Status  string `json:"status"` // A added, D deleted, M modified
	Added   int    `json:"added"`
	Removed int    `json:"removed"`
	// Exact is false for files too long to compare within the budget:
	// their lines are then all removed and all added.
	Exact bool       `json:"-"`
	Lines []DiffLine `json:"-"`
}

// MaxDiffCells bounds the work of one DiffFiles: each file's lines
// multiplied, summed over the files.
const MaxDiffCells = 4_000_000

// DiffFiles compares bundle a's files with b's (path to content), in
// path order, leaving out the files that are the same. The comparison
// is a longest-common-subsequence line diff, within MaxDiffCells for all
// the files together.
func DiffFiles(a, b map[string]string) []FileDiff {
	paths := make([]string, 0, len(a)+len(b))
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	budget := MaxDiffCells
	var out []FileDiff
	for _, p := range paths {
		x, inA := a[p]
		y, inB := b[p]
		if inA && inB && x == y {
			continue
		}
		f := FileDiff{Path: p, Status: "M"}
		switch {
		case !inA:
			f.Status = "A"
		case !inB:
			f.Status = "D"
		}
		la, lb := splitLines(x), splitLines(y)
		if cells := (len(la) + 1) * (len(lb) + 1); cells <= budget {
			budget -= cells
			f.Lines, f.Exact = diffLines(la, lb), true
		} else {
			for _, l := range la {
				f.Lines = append(f.Lines, DiffLine{'-', l})
			}
			for _, l := range lb {
				f.Lines = append(f.Lines, DiffLine{'+', l})
			}
		}
		for _, l := range f.Lines {
			switch l.Op {
			case '+':
				f.Added++
			case '-':
				f.Removed++
			}
		}
		out = append(out, f)
	}
	return out
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// diffLines is a longest-common-subsequence line diff of a and b.
func diffLines(a, b []string) []DiffLine {
	// lcs[i][j] is the length of the LCS of a[i:] and b[j:].
	lcs := make([][]int32, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []DiffLine
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out = append(out, DiffLine{' ', a[i]})
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, DiffLine{'+', b[j]})
			j++
		default:
			out = append(out, DiffLine{'-', a[i]})
			i++
		}
	}
	return out
}
