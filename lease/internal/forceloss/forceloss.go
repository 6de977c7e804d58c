// Package forceloss connects package lease to its fake in lease/leasetest
// without adding a way to force a loss to the public API.
package forceloss

// Func marks the lock held for key by locker (a *lease.Locker) as lost
// with reason "forced" and reports whether there was one. Package lease sets
// it at init.
var Func func(locker any, key, detail string) bool
