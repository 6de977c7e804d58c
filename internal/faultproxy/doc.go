// Package faultproxy is a loopback TCP proxy that a test puts between a
// client and a server (a replica and the API server) to cut or stall the
// network between them at run time.
//
// The proxy forwards raw bytes, so TLS passes through unchanged: the client
// still verifies the server's certificate, and RestConfig and Kubeconfig keep
// the original server name for that check.
//
// # Modes
//
// SetMode switches at any time; it applies to new connections and, where
// stated, to the connections already open.
//
//   - Pass: each accepted connection is forwarded to the target, both ways,
//     half-closes included. If the target cannot be dialled, the client's
//     connection is reset.
//   - Refuse: each new connection is accepted by the kernel and then reset at
//     once (SO_LINGER 0, then close, which sends a TCP RST). Setting Refuse
//     resets every open connection, forwarding or stalled, on both sides.
//     Clients see "connection reset by peer", from connect or from their
//     first read or write, not "connection refused": the listener stays open
//     so that the address stays the same.
//   - Blackhole: each new connection is accepted and then nothing is read from
//     it or written to it, and the target is not dialled. Setting Blackhole
//     stalls every open connection: the proxy stops reading and writing on
//     both sides; bytes it had already read and not yet written are dropped.
//     Neither side is closed, so neither side learns anything: a silent stall.
//
// A stalled connection stays stalled after the mode goes back to Pass, until
// Refuse or Close resets it. A partition stalls an established TCP stream
// the same way; whether the stream resumes once the partition heals depends
// on both kernels' retransmission timers and on neither side having given up
// meanwhile, so a client cannot rely on it. The proxy models the worst case,
// a stream that never resumes, which is what the clients under test must
// survive: time the stalled request out, give up the connection, and dial a
// new one, which Pass then forwards. While stalled, the proxy cannot see a
// client close its end (it reads nothing, as a lost FIN would go unseen), so
// the stalled connection counts as active until it is reset. The proxy's
// kernel still acknowledges TCP keepalive probes, so a client's TCP
// keepalive does not detect the stall; only the client's own timeouts
// (request deadlines, HTTP/2 pings) do.
//
// # What a client-go client sees
//
// Measured against a real API server with a client from kubeclient.Configure
// (5 s per-request deadline); the integration tests pin these down.
//
//   - Refuse: a write (Create, Update, Delete) fails at once with the reset
//     (a *net.OpError). A GET is retried by client-go on "connection reset",
//     ten times a second apart, each time on a new connection, and then fails
//     with the same kind of error: about 10 s, not a deadline.
//   - Blackhole: a request fails with context.DeadlineExceeded when its
//     deadline passes. After Pass, client-go keeps sending requests on the
//     stalled HTTP/2 connection, each running into its deadline, until the
//     transport's HTTP/2 health check closes it: a ping after
//     HTTP2_READ_IDLE_TIMEOUT_SECONDS (default 30) without a frame, and
//     HTTP2_PING_TIMEOUT_SECONDS (default 15) for the answer, both read from
//     the environment when the transport is built. Only then does it dial a
//     new connection. A suite that wants quick recovery sets both for the
//     processes it starts, keeping their sum above the request deadline, so
//     that a stalled request ends with its deadline rather than with a
//     closed connection, which client-go retries for a GET.
//
// # Guarantees
//
// Close closes the listener, resets every connection and returns once every
// goroutine the proxy started has ended. Accepted and Active are exact at the
// moment they are read; a connection is active from the moment it is accepted
// until it is closed or reset.
package faultproxy
