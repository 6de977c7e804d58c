// Package collector registers Prometheus collectors so that several
// instances of one component (several Lockers, Recorders or servers in
// one process, as in tests) can share a registry.
package collector

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers *c with reg, or, when reg already holds an identical
// collector (same name, labels and help) from another instance, replaces *c
// by that one, so both instances count into the same series. A collector
// of another type under the same name is an error. Once *errp is set,
// Register does nothing, so a constructor can register a list and check
// the error once.
func Register[C prometheus.Collector](reg prometheus.Registerer, c *C, errp *error) {
	if *errp != nil {
		return
	}
	err := reg.Register(*c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
	case errors.As(err, &are):
		existing, ok := are.ExistingCollector.(C)
		if !ok {
			*errp = err
			return
		}
		*c = existing
	default:
		*errp = err
	}
}
