package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRun runs main twice in an empty directory: the second run finds the
// first one's event in data/counter.db.
func TestRun(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, want := range []string{
		"counter-c1 at version 1, position 1\n",
		"counter-c1 at version 2, position 2\n",
	} {
		if got := stdout(t, main); got != want {
			t.Fatalf("main printed %q, want %q", got, want)
		}
	}
}

// stdout returns what f writes to os.Stdout.
func stdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	orig := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = orig }()
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	f()
	w.Close()
	return <-out
}

// TestREADME checks that the README's library example is this file, whole.
func TestREADME(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## Using it as a library\n")
	if !ok {
		t.Fatal(`README.md has no "## Using it as a library" section`)
	}
	_, block, ok := strings.Cut(rest, "```go\n")
	if ok {
		block, _, ok = strings.Cut(block, "```\n")
	}
	if !ok {
		t.Fatal("README.md's library section has no ```go block")
	}
	if block != string(src) {
		t.Errorf("README.md's library example differs from examples/counter/main.go; paste the file into it whole")
	}
}
