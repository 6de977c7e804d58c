//go:build !integration

package dedup

import (
	"testing"

	"go.uber.org/goleak"
)

// Workers are goroutines started by Record; every test must end with none.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
