//go:build integration

package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestUpOnce runs the README's first command the way a user does and checks
// that it cleans up after itself.
func TestUpOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := newRootCommand()
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"up", "--once"})
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("up --once: %v\n%s", err, out.String())
	}
	for _, want := range []string{"API server:  https://127.0.0.1:", "kubeconfig:  ", "smoke check: created leasehold-system/"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	m := regexp.MustCompile(`kubeconfig:  (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no kubeconfig path in output:\n%s", out.String())
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("kubeconfig %s still exists after up --once (stat err %v): data folder not removed", m[1], err)
	}
}
