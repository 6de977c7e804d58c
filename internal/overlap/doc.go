// Package overlap checks that at most one object of a group is active at
// once, on every change that was committed. A Replay takes the changes of
// one resource in one namespace in commit order and, per exclusion group
// (the target of a WorkflowExecution, the fingerprint of a
// RemediationRequest, or whatever a Classifier says), keeps the most
// objects active at once and describes every moment with more than one.
//
// A Watch feeds a Replay from one of two sources:
//
//   - Start lists the resource through the API server and watches it from
//     that list's resourceVersion.
//   - StartEtcd ranges the resource's keys in the API server's etcd and
//     watches them from that range's revision. It reads what the API
//     server wrote without going through it, so it goes on across an API
//     server restart; it resumes across an etcd restart too, because etcd
//     keeps its history.
//
// # Guarantees
//
//   - Both sources deliver the changes of one resource in commit order
//     (resourceVersion, which is the etcd revision), so every state the
//     Replay rebuilds is a state the resource actually passed through: an
//     overlap that lasted between two commits is seen, however short.
//     Counts taken from polled lists could miss it.
//   - After a broken connection both resume from the last change they
//     delivered, so no change is skipped. What they cannot resume from is
//     reported in Result.Gaps: for Start, an expired resourceVersion (as
//     after an API server restart, whose new watch cache begins later) or
//     a watch that ends before Close; for StartEtcd, a watch etcd cancels
//     (its history compacted past the revision asked for), a request it
//     rejects, or a change it cannot decode. What happened after a gap went
//     unchecked, and a caller must not take it as a pass.
//   - A watch runs until Close, whatever happens to the context given to
//     Start or StartEtcd; Close waits for its goroutine and closes its
//     connections.
//
// # What is not guaranteed
//
//   - The Watch sees only what was committed: two objects a client meant
//     to be active together but wrote one after the other with the first
//     already finished are not an overlap, and an action outside the API
//     server (the executor's real work) is not seen at all.
//   - Objects are told apart by name. An object deleted and created again
//     under the same name is the same object to the Watch.
//   - Result reflects what the Watch has received so far. To judge a state
//     a list shows, wait until CaughtUp reports that the watch has seen it.
//   - Added times are when this process received the change, not when it
//     was committed.
//   - StartEtcd depends on how the API server stores objects: custom
//     resources as JSON under /registry/<group>/<plural>/<namespace>/<name>
//     (the default --etcd-prefix, no encryption at rest), and on reaching
//     etcd's client URL without authentication, as on a test control
//     plane. It waits for changes without a deadline: a stream that stays
//     open while etcd sends nothing (a hung etcd) is not told apart from
//     a quiet one.
package overlap
