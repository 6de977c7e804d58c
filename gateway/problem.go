package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Problem is an RFC 7807 problem details body, sent with Content-Type
// application/problem+json on every error answer.
type Problem struct {
	// Type identifies the kind of problem: one of the ProblemType values.
	Type string `json:"type"`
	// Title is a short summary of Type, the same for every occurrence.
	Title string `json:"title"`
	// Status repeats the HTTP status code.
	Status int `json:"status"`
	// Detail explains this occurrence.
	Detail string `json:"detail"`
	// Instance is the request path.
	Instance string `json:"instance,omitempty"`
	// Field is an extension member: the payload field that made the request
	// invalid, as a JSON path such as "alerts[2].labels.namespace".
	Field string `json:"field,omitempty"`
	// Index is an extension member: the entry of the payload the problem is
	// about, when it is about one (-1 or absent otherwise).
	Index *int `json:"index,omitempty"`
}

// Content types of the answers.
const (
	ContentTypeJSON    = "application/json"
	ContentTypeProblem = "application/problem+json"
)

// Problem types. They are identifiers; nothing is served at these URIs.
const (
	ProblemInvalid         = "https://leasehold.dev/problems/invalid-signal"
	ProblemUnauthenticated = "https://leasehold.dev/problems/unauthenticated"
	ProblemForbidden       = "https://leasehold.dev/problems/forbidden"
	ProblemNotFound        = "https://leasehold.dev/problems/not-found"
	ProblemMethod          = "https://leasehold.dev/problems/method-not-allowed"
	ProblemTooLarge        = "https://leasehold.dev/problems/body-too-large"
	ProblemMediaType       = "https://leasehold.dev/problems/unsupported-media-type"
	ProblemOverloaded      = "https://leasehold.dev/problems/overloaded"
	ProblemBusy            = "https://leasehold.dev/problems/busy"
	ProblemUnavailable     = "https://leasehold.dev/problems/unavailable"
	ProblemAuthUnavailable = "https://leasehold.dev/problems/authentication-unavailable"
	ProblemAuthBusy        = "https://leasehold.dev/problems/authentication-busy"
	ProblemDeadline        = "https://leasehold.dev/problems/deadline-exceeded"
	ProblemShuttingDown    = "https://leasehold.dev/problems/shutting-down"
	ProblemInternal        = "https://leasehold.dev/problems/internal"
	ProblemNotReady        = "https://leasehold.dev/problems/not-ready"
	ProblemMetricsDisabled = "https://leasehold.dev/problems/metrics-not-served"
	// ProblemOwnerUnresolved: the workload of a signal's object could not
	// be determined now (owner.ErrUnresolved); the detail names the
	// object whose lookup failed and why.
	ProblemOwnerUnresolved = "https://leasehold.dev/problems/owner-unresolved"
)

var problemTitles = map[string]string{
	ProblemInvalid:         "Invalid signal",
	ProblemUnauthenticated: "Missing or invalid bearer token",
	ProblemForbidden:       "Forbidden",
	ProblemNotFound:        "Not found",
	ProblemMethod:          "Method not allowed",
	ProblemTooLarge:        "Request body too large",
	ProblemMediaType:       "Unsupported media type",
	ProblemOverloaded:      "Too many signals in flight",
	ProblemBusy:            "Incident busy",
	ProblemUnavailable:     "API server unavailable",
	ProblemAuthUnavailable: "Authentication unavailable",
	ProblemAuthBusy:        "Too many token reviews in flight",
	ProblemDeadline:        "Request deadline exceeded",
	ProblemShuttingDown:    "Shutting down",
	ProblemInternal:        "Internal error",
	ProblemNotReady:        "Not ready",
	ProblemMetricsDisabled: "Metrics not served",
	ProblemOwnerUnresolved: "Workload owner unresolved",
}

// newProblem builds a Problem of type typ for request r.
func newProblem(r *http.Request, status int, typ, detail string) *Problem {
	return &Problem{Type: typ, Title: problemTitles[typ], Status: status, Detail: detail, Instance: r.URL.Path}
}

// writeProblem sends p. Headers the status needs (Allow, Retry-After,
// WWW-Authenticate) are set by the caller before.
func writeProblem(w http.ResponseWriter, p *Problem) {
	writeJSON(w, p.Status, ContentTypeProblem, p)
}

func writeJSON(w http.ResponseWriter, status int, contentType string, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		// Every body is a struct of strings and numbers: marshalling
		// cannot fail. Answer something valid anyway.
		status, contentType = http.StatusInternalServerError, ContentTypeProblem
		b = []byte(`{"type":"` + ProblemInternal + `","title":"Internal error","status":500,"detail":"encode answer"}`)
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// retryAfterSeconds renders d as a Retry-After value: whole seconds,
// rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}
