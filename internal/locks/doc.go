// Package locks lets an operator see and clean up the Leases that package
// lease writes: list them, show one, and sweep those a crashed holder left
// behind. It backs `leasehold locks`.
//
// # What it reads
//
// A Lease is ours when it carries lease.LabelManagedBy=lease.ManagedByValue;
// lease.LabelPrefix names its lock family (gw-lock, ro-lock) and
// lease.AnnotationKey holds the raw key, since the name is a hash of it.
// Reads are plain List and Get calls on the API server, never a cache.
//
// # Times are the holder's, judged here
//
// acquireTime and renewTime are written by the holder with its own clock.
// "Expires in" (renewTime + leaseDurationSeconds - now) compares them with
// this machine's clock, so it is for display only: under clock skew it is
// off by the skew. The lock library never judges expiry this way; it
// waits until it has seen a Lease unchanged for its duration.
//
// # Tokens
//
// The TOKEN shown is the Lease's current resourceVersion. The holder's
// fencing token is the resourceVersion its acquiring write returned, which
// its renewals have since moved past and which the Lease does not record.
// What the shown value does say: the holder's token is at most this, and
// the token of every later acquisition of the key will be greater.
//
// # Sweeping
//
// Kubernetes does not garbage-collect Leases without owners, so a holder
// that crashed leaves its Lease behind until another process takes the key
// over. Sweeper deletes such Leases, one shot, and never a live one:
//
//   - By observation (always). It lists the Leases, waits the idle time on
//     its own clock, lists them again, and deletes those whose UID and
//     resourceVersion did not change in between, with UID and
//     resourceVersion preconditions. A resourceVersion only ever increases,
//     so two equal readings mean no write happened in between: no renewal,
//     no takeover, no hand-off. A Lease is deleted only once it was seen
//     unchanged for at least its own leaseDurationSeconds too; by then its
//     holder, had it been alive but unable to renew, has passed its safe
//     deadline and already treats the lock as lost. This is the rule
//     lease.Locker.Sweep applies, without comparing any remote timestamp.
//   - By age (only with SweepOptions.OlderThan, at least an hour). Leases
//     whose last recorded activity is older than the threshold on this
//     machine's clock are deleted at once, again with preconditions. This
//     one trusts timestamps, which is why the threshold must be far larger
//     than any plausible clock skew or lease duration.
//
// Not guaranteed: a Lease created after the first listing is not watched
// and never deleted by that sweep; a holder that stays paused for longer
// than its lease duration and then resumes finds its Lease gone, which is
// a loss it would have suffered to any contender anyway.
//
// # RBAC
//
// Listing and showing need list and get on leases.coordination.k8s.io in
// the namespace; sweeping needs list and delete. No watch is opened: two
// listings compare resourceVersions, which is all a watch would tell.
package locks
