// Package lease provides named locks on Kubernetes coordination.k8s.io/v1
// Leases that stay safe under contention, crashes, process pauses and clock
// skew, with fencing tokens and a loss signal.
//
//	locker, err := lease.New(clientset.CoordinationV1(), lease.Options{
//		Namespace: "leasehold-system",
//		Identity:  podName,
//		Prefix:    "gw-lock",
//	})
//	lk, err := locker.Acquire(ctx, key) // or TryAcquire: errors.Is(err, lease.ErrHeld)
//	defer lk.Release(ctx)
//	// work under lk.Context(); check lk.Err() right before each protected
//	// write and pass lk.Token() to the resource that can check it.
//
// # Protocol
//
// One Lease per key, named "<prefix>-<SHA-256 of the key>", labelled as ours,
// with the raw key in an annotation. Acquiring a free key is one Create
// (AlreadyExists means contention). A Lease that exists is taken over only
// once it has expired by observation (below), with one Update carrying the
// resourceVersion observed (Conflict means someone else won); the takeover
// writes a new holder, acquireTime, renewTime, leaseDurationSeconds and
// increments leaseTransitions. While held, a lock renews its Lease every
// RenewInterval with an Update carrying the resourceVersion of its own last
// write. Release is a Delete with UID and resourceVersion preconditions,
// or, when a goroutine of the same Locker waits for the key, one Update that
// hands the Lease over to it. Every write is optimistic or conditional, so
// a Locker never overwrites or deletes a Lease another holder wrote.
//
// Each acquisition writes its own holder id "<Identity>/<random>", so two
// acquisitions, even of the same process, are never confused.
//
// # Expiry by observation
//
// A process never compares the remote renewTime with its own clock. It
// remembers when it first saw the Lease's current resourceVersion, on its
// own monotonic clock, and considers the Lease expired once it has seen no
// change for the Lease's leaseDurationSeconds (Options.LeaseDuration if the
// field is missing; a Lease with missing fields expires like any other).
// Consequences: a process that first sees a Lease waits a full duration
// before taking it over, so after a holder crashes its keys stay locked for
// up to one duration from when a contender first looked (use Sweep and short
// durations where that matters); wall-clock skew between hosts changes
// nothing.
//
// # The safe deadline and loss
//
// A lock is safely held until its safe deadline: the moment the last
// successful acquire or renew request was sent, plus LeaseDuration, minus
// SafetyMargin, on the local monotonic clock. Why this is safe: the write
// was applied after it was sent, so any other process saw that version no
// earlier, and waits a full duration from then; a process that saw an older
// version cannot take over, because its Update carries the older
// resourceVersion and fails. SafetyMargin covers differences in clock rate.
//
// New validates the timings this rests on: SafetyMargin is at least 1% of
// LeaseDuration, LeaseDuration exceeds RenewInterval + SafetyMargin, and
// RequestTimeout is at most LeaseDuration - SafetyMargin - RenewInterval,
// so the acquiring write, answered or not, leaves at least RenewInterval
// of safe time, and a renewal sent on schedule is answered or abandoned by
// the safe deadline (the default RequestTimeout, 5s, shrinks to that bound
// for short leases). TryAcquire and Acquire never return a lock whose safe
// deadline has passed (a pause, or a write answered that late): they end
// it and return an error matching ErrLost.
//
// At the safe deadline, if no renewal has succeeded meanwhile, the lock is
// lost. Lock.Err and Lock.Context both compare the deadline with the clock
// whenever they are asked, so a process resuming from a pause sees ErrLost
// from Err, and a done Context with a cause matching ErrLost, before any
// timer has had a chance to fire; the two never disagree, and once they
// report a loss, no late renewal revives the lock. Call Err right before
// each protected write. Both are reads: the loss is declared (metrics, log,
// the renewer stopped, the key passed to the next local waiter) by a timer
// independent of the API call (a hanging renewal cannot delay it; every API
// call also has its own RequestTimeout), which after a pause fires as soon
// as the process runs again. Contexts derived from Lock.Context are
// cancelled with it: when anything reads it past the deadline, or when that
// timer fires. If a renewal finds the Lease taken over or deleted, the loss
// is immediate.
//
// Release cancels Context with ErrReleased (with ErrClosed when
// Locker.Close released it) before it deletes or hands off the Lease. If
// that write finds the Lease taken over or deleted, the lock had been lost
// before it was released: Release returns an error matching ErrLost, and
// from then on Err and context.Cause(Context) match ErrLost too (a context
// derived before keeps ErrReleased). A clean release never reports ErrLost:
// a Lease found holding a hand-off of this Release whose answer was lost
// (even by the Delete it fell back to) is that hand-off, granted to the
// waiter; a Conflict whose read-back fails leaves the outcome unknown, and
// Release returns an error that does not match ErrLost.
//
// API errors keep their type (apierrors.Is*). A request that client-go's
// rate limiter refuses because its turn would come after the context's
// deadline fails with an error matching context.DeadlineExceeded, with
// client-go's message. Such a refusal may concern client-go's retry of a
// write that was sent and applied (a 504 with Retry-After), so a write
// refused this way is handled like one that timed out: the Locker reads
// the Lease back and deletes, conditionally, what it may have written.
//
// # Exclusion inside a process
//
// Exclusion holds between goroutines, not only between processes. Per key,
// a Locker holds at most one Lease and queues its local waiters in FIFO
// order behind the holder: only the head of the queue talks to the API
// server, so waiting locally costs no API calls. There is no re-entrancy:
// a second TryAcquire of a held key returns ErrHeld at once, without an API
// call; a second Acquire queues. On Release, the Lease is handed to the next
// local waiter with one Update (new holder id, leaseTransitions+1, and a new
// token); after MaxLocalHandoffs consecutive hand-offs the Lease is deleted
// instead, so other processes get a turn: the next local waiter then
// watches the Lease for a short window (100ms on the Locker's clock) and
// creates it only if no other process did meanwhile; if one did, it waits
// for that holder like any remote contender. A waiter whose context ends
// leaves the queue; a lost lock passes the key to the next waiter, which
// then acquires like any remote contender.
//
// # Waiting on another process
//
// Acquire, when another process holds the key, watches that one Lease (a
// field selector on its name, from the resourceVersion it observed) and
// keeps that watch for the rest of the acquisition: a renewal by the holder
// is an event, not a request. Events not newer than what it has already
// observed are ignored. A deletion or a change wakes it at once; otherwise
// it wakes when the Lease would expire by observation, the time spent
// opening the watch included (the open is bounded by RequestTimeout), and
// then, if the watch was healthy throughout, takes it over with one Update
// and no Get. A watch the server closes is re-opened from the newest
// version seen. If the watch cannot be opened or fails, the rounds are
// spaced by Options.Backoff (full jitter, base 100ms, cap 1s by default)
// and each starts with a Get; a Create retried because the Lease vanished
// between a lost Create and its Get waits the backoff delay too. Acquire
// is bounded only by its context: without a deadline it waits forever, like
// sync.Mutex.Lock. API errors other than contention end it at once; wrap it
// in a retry loop if you want more.
//
// # Fencing tokens
//
// Lock.Token is the resourceVersion returned by the write that acquired the
// lock (Create, takeover Update, or hand-off Update). Resource versions of
// one resource type are comparable since Kubernetes 1.35
// (resourceversion.CompareResourceVersion) and keep increasing across
// deletes and re-creates, so tokens of one key strictly increase over every
// successful acquisition. Assumption: etcd is never restored to an older
// revision.
//
// # What only fencing protects
//
// A lease cannot stop a process that is paused (GC, SIGSTOP, a VM stall)
// between checking Err and performing its write: when it resumes, it may
// hold a stale token while another holder has taken over. Critical sections
// of two holders may therefore overlap in wall-clock time. What stays true
// is token order: if the protected resource rejects writes whose token is
// lower than the highest it has accepted (or the writes are idempotent by
// construction, such as deterministic object names), no stale write lands.
//
// # Lock delay
//
// Options.LockDelay makes Acquire wait that long after taking over an
// expired Lease (never after a Create or a hand-off, which follow a clean
// release). It lets writes a paused previous holder already had in flight
// land or time out before the new holder starts, and only if the request
// timeout of those writes is no longer than the delay. A holder paused
// before sending is stopped only by Err and by fencing.
//
// # Assumptions
//
//   - Clocks run at a bounded RATE (drift well inside SafetyMargin over a
//     LeaseDuration); they need not be synchronised.
//   - Go's monotonic clock stops while a host is suspended: a suspended
//     holder does not see time pass. After resume its lease has likely
//     been taken over, and Err (by the clock) may still say held until a
//     renewal observes the takeover; fencing covers that window.
//   - Resource versions never go backwards (no etcd restore to an older
//     revision).
//   - LeaseDuration is much longer than RenewInterval plus SafetyMargin
//     (New enforces greater-than), and than typical API latency (New
//     enforces that RequestTimeout fits, see above).
//
// # Leftover Leases
//
// Kubernetes does not garbage-collect Leases without owners. Sweep (and
// RunSweeper) delete, with UID and resourceVersion preconditions, Leases of
// this Locker's prefix observed unchanged for an idle time of at least one
// lease duration.
//
// # Metrics
//
// With Options.Registerer, the Locker registers <MetricsNamespace>_lock_*:
// acquire_attempts_total{method}, acquisitions_total{path},
// contention_total{where} (acquisition calls that found the key held,
// once per call), wait_wakeups_total{reason} (rounds of waiting for
// another process, by changed, deleted, expired or poll),
// api_errors_total{operation},
// acquire_duration_seconds{outcome}, hold_duration_seconds,
// renewals_total, renewal_failures_total, losses_total{reason},
// takeovers_total, releases_total{outcome}, local_handoffs_total, held and
// swept_total. Labels are bounded enums; keys never appear.
//
// # RBAC
//
// In its namespace the Locker needs get, list, watch, create, update and
// delete on leases.coordination.k8s.io: get, create, update, delete for
// locking; watch for waiting; list for sweeping.
//
//	rules:
//	- apiGroups: ["coordination.k8s.io"]
//	  resources: ["leases"]
//	  verbs: ["get", "list", "watch", "create", "update", "delete"]
//
// # Testing
//
// Code that takes locks should depend on Interface; package leasetest
// provides a fake that can force contention and loss.
package lease
