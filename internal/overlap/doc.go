// Package overlap checks that at most one object of a group is active at
// once, on every change the API server committed. A Watch lists one
// resource in one namespace, then watches it from that list's
// resourceVersion and replays each change in commit order; per exclusion
// group (the target of a WorkflowExecution, the fingerprint of a
// RemediationRequest, or whatever a Classifier says) it keeps the most
// objects active at once and describes every moment with more than one.
//
// # Guarantees
//
//   - One watch stream of one resource is delivered in resourceVersion
//     order, so every state the Watch rebuilds is a state the API server
//     actually passed through: an overlap that lasted between two commits
//     is seen, however short. Counts taken from polled lists could miss it.
//   - After a broken connection the watch resumes from the last
//     resourceVersion it delivered, so no change is skipped. Changes it
//     cannot resume from (an expired resourceVersion), and a watch that
//     ends before Close, are reported in Result.Gaps: what happened after
//     a gap went unchecked, and a caller must not take it as a pass.
//   - The watch runs until Close, whatever happens to the context given to
//     Start; Close waits for its goroutine.
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
//   - Added times are when this process received the change, not when the
//     API server committed it.
package overlap
