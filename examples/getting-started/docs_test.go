package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTutorialQuotesThisCode checks that every Go block of
// docs/getting-started.md is a verbatim excerpt (whole lines) of this
// package's files, so the tutorial cannot drift from code that compiles and
// passes its tests.
func TestTutorialQuotesThisCode(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "getting-started.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var sources []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, "\n"+string(b))
	}
	blocks := goBlocks(string(doc))
	if len(blocks) < 10 {
		t.Fatalf("found %d Go blocks in docs/getting-started.md, want the tutorial's 10 or more", len(blocks))
	}
	for _, b := range blocks {
		if !quoted(sources, b.text) {
			t.Errorf("docs/getting-started.md:%d: the Go block is not a verbatim excerpt of examples/getting-started:\n%s",
				b.line, b.text)
		}
	}
}

func quoted(sources []string, block string) bool {
	for _, src := range sources {
		if strings.Contains(src, "\n"+block+"\n") {
			return true
		}
	}
	return false
}

type block struct {
	line int // of the opening fence, counting from 1
	text string
}

// goBlocks returns the fenced ```go blocks of a Markdown document.
func goBlocks(doc string) []block {
	var out []block
	var cur []string
	start := 0
	for i, l := range strings.Split(doc, "\n") {
		switch {
		case start == 0 && l == "```go":
			start, cur = i+1, nil
		case start != 0 && l == "```":
			out = append(out, block{line: start, text: strings.Join(cur, "\n")})
			start = 0
		case start != 0:
			cur = append(cur, l)
		}
	}
	return out
}

func TestGoBlocks(t *testing.T) {
	doc := "text\n```go\na\n\nb\n```\n```sh\nc\n```\n```go\nd\n```\n"
	got := goBlocks(doc)
	if len(got) != 2 || got[0] != (block{2, "a\n\nb"}) || got[1] != (block{10, "d"}) {
		t.Fatalf("goBlocks = %+v", got)
	}
	if !quoted([]string{"\nx\na\n\nb\ny\n"}, "a\n\nb") || quoted([]string{"\nxa\n\nb\n"}, "a\n\nb") {
		t.Fatal("quoted must match whole lines only")
	}
}
