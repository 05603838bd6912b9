package selector

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the computed lines (err:, tokens:) of testdata files")

// directive is one "key: value" line of a testdata file. A key ending in
// "q" (selq:, inq:, badq:) holds a Go-quoted string, for values with
// newlines or leading/trailing blanks that must be visible.
type directive struct {
	line int
	key  string
	val  string
}

// readCases splits a testdata file into cases: each case starts at a line
// whose key is start (or start+"q") and runs to the next such line; with
// start "" the whole file is one case. Blank
// lines and lines starting with # are kept verbatim for rewriting but are
// not directives.
func readCases(t testing.TB, path, start string) (cases [][]directive, lines []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		lines = append(lines, line)
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, ": ")
		if !ok {
			if k, found := strings.CutSuffix(line, ":"); found {
				key, val = k, ""
			} else {
				t.Fatalf("%s:%d: want \"key: value\", got %q", path, n, line)
			}
		}
		if strings.HasSuffix(key, "q") {
			uq, err := strconv.Unquote(val)
			if err != nil {
				t.Fatalf("%s:%d: bad quoted value %s: %v", path, n, val, err)
			}
			key, val = strings.TrimSuffix(key, "q"), uq
		}
		d := directive{line: n, key: key, val: val}
		if key == start || start == "" && len(cases) == 0 {
			cases = append(cases, []directive{d})
			continue
		}
		if len(cases) == 0 {
			t.Fatalf("%s:%d: %q before the first %q", path, n, key, start)
		}
		cases[len(cases)-1] = append(cases[len(cases)-1], d)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases, lines
}

// rewriteLines replaces line numbers (1-based) in lines with new content
// and writes the file, when -rewrite is set.
func rewriteLines(t *testing.T, path string, lines []string, repl map[int]string) {
	t.Helper()
	if !*rewrite {
		return
	}
	for n, s := range repl {
		lines[n-1] = s
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func where(path string, d directive) string { return fmt.Sprintf("%s:%d", path, d.line) }
