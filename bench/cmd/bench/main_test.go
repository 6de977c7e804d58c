package main

import "testing"

func TestCommandQuotesWhatAShellWouldSplit(t *testing.T) {
	got := command([]string{"--reps", "10", "--markdown", "my docs/b.md", "--out", ""})
	want := "go run ./bench/cmd/bench --reps 10 --markdown 'my docs/b.md' --out ''"
	if got != want {
		t.Errorf("command = %q, want %q", got, want)
	}
}
