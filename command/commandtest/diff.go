package commandtest

import "strings"

// Diff returns a line diff of want and got: lines only in want start with "-",
// lines only in got with "+", common lines with a space. It aligns the lines on
// a longest common subsequence, so one changed event shows as one -/+ pair
// rather than shifting every line after it.
func Diff(want, got []string) string {
	// lcs[i][j] is the length of the longest common subsequence of want[i:]
	// and got[j:].
	lcs := make([][]int, len(want)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(got)+1)
	}
	for i := len(want) - 1; i >= 0; i-- {
		for j := len(got) - 1; j >= 0; j-- {
			if want[i] == got[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	line := func(mark, s string) {
		b.WriteString(mark)
		b.WriteString(s)
		b.WriteByte('\n')
	}
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case i < len(want) && j < len(got) && want[i] == got[j]:
			line("  ", want[i])
			i, j = i+1, j+1
		case i < len(want) && (j == len(got) || lcs[i+1][j] >= lcs[i][j+1]):
			line("- ", want[i])
			i++
		default:
			line("+ ", got[j])
			j++
		}
	}
	if len(want) == 0 && len(got) == 0 {
		line("  ", "(no events)")
	}
	return b.String()
}
