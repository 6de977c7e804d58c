//go:build !integration

package deploy_test

import (
	"os"
	"testing"
)

// TestMain removes the binary the static build test made.
func TestMain(m *testing.M) {
	code := m.Run()
	removeImageBuild()
	os.Exit(code)
}
