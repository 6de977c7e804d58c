package main

import (
	"io"
	"strings"
	"testing"
)

// The access review is on unless turned off explicitly; --insecure-no-auth
// turns it off only when it was not asked for.
func TestGatewayAccessReviewDefault(t *testing.T) {
	cmd := newGatewayCommand()
	if got := cmd.Flags().Lookup("access-review").DefValue; got != "true" {
		t.Errorf("--access-review defaults to %s, want true", got)
	}
	if got := cmd.Flags().Lookup("token-audience").DefValue; got != "leasehold-gateway" {
		t.Errorf("--token-audience defaults to %q, want leasehold-gateway", got)
	}

	cmd = newGatewayCommand()
	cmd.SetArgs([]string{"--identity", "gw-0", "--insecure-no-auth", "--access-review"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "--access-review needs authentication") {
		t.Errorf("--insecure-no-auth with an explicit --access-review: err = %v, want a refusal", err)
	}
}
