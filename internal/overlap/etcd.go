package overlap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/backoff"
)

const (
	// rangePageSize bounds one page of the initial range, so that a large
	// namespace does not make one response larger than etcd will send.
	rangePageSize = 500
	// dialTimeout and responseHeaderTimeout bound the parts of a request
	// that answer at once from a live etcd, so that a request to an etcd
	// that is stopping or hung fails and is retried instead of hanging.
	// The body of a watch stream has no bound: it lasts until Close.
	dialTimeout           = 5 * time.Second
	responseHeaderTimeout = 10 * time.Second
)

// reconnectConfig is the wait before each new watch after a broken one:
// 100ms doubling to 1s, without jitter, since one watcher per resource
// cannot make a herd. An etcd restart takes several seconds, so the 1s cap
// keeps the resume close behind it.
var reconnectConfig = backoff.Config{BasePeriod: 100 * time.Millisecond, MaxPeriod: time.Second, Multiplier: 2, NoJitter: true}

// EtcdKey is the etcd key prefix under which a kube-apiserver with the
// default --etcd-prefix (/registry) stores the objects of one custom
// resource in one namespace: /registry/<group>/<plural>/<namespace>/.
func EtcdKey(group, plural, namespace string) string {
	return "/registry/" + group + "/" + plural + "/" + namespace + "/"
}

// DecodeExecution decodes a WorkflowExecution as the API server stores it
// in etcd: as JSON, like every custom resource.
func DecodeExecution(data []byte) (client.Object, error) {
	var wfe v1alpha1.WorkflowExecution
	if err := json.Unmarshal(data, &wfe); err != nil {
		return nil, err
	}
	return &wfe, nil
}

// DecodeRequest decodes a RemediationRequest as the API server stores it
// in etcd.
func DecodeRequest(data []byte) (client.Object, error) {
	var rr v1alpha1.RemediationRequest
	if err := json.Unmarshal(data, &rr); err != nil {
		return nil, err
	}
	return &rr, nil
}

// StartEtcd reads the objects under one etcd key prefix straight from
// etcd, through the JSON gateway etcd serves on its client URL, and feeds
// a Replay with them: it ranges the prefix, then watches it from the next
// revision and applies every change in revision order. key is a prefix
// ending in "/", normally EtcdKey's; the last segment of each key names
// its object. decode turns a stored value into an object (DecodeExecution,
// DecodeRequest); what names the objects in messages.
//
// Unlike Start, it does not depend on the API server: every change the
// API server committed is an etcd revision, and etcd keeps its history
// across an API server restart and across its own. After a broken stream
// (etcd restarting refuses connections for several seconds) it watches
// again from one past the last revision it applied, waiting 100ms
// doubling to 1s between attempts, as often as it takes until Close. Only
// a watch etcd cancels (its history compacted past the revision asked
// for) or rejects as malformed is recorded as a gap, and ends the watch.
//
// ctx bounds only the initial range, and gives the logger reconnections
// are logged on; the watch runs until Close.
func StartEtcd(ctx context.Context, etcdURL, key, what string, decode func([]byte) (client.Object, error), classify Classifier) (*Watch, error) {
	return startEtcd(ctx, etcdURL, key, what, decode, classify, clock.RealClock{})
}

func startEtcd(ctx context.Context, etcdURL, key, what string, decode func([]byte) (client.Object, error), classify Classifier, clk clock.Clock) (*Watch, error) {
	replay, err := NewReplay(what, classify, clk)
	if err != nil {
		return nil, err
	}
	base, err := url.Parse(etcdURL)
	switch {
	case err != nil:
		return nil, fmt.Errorf("overlap: etcd URL: %w", err)
	case base.Scheme != "http" && base.Scheme != "https", base.Host == "":
		return nil, fmt.Errorf("overlap: etcd URL %q is not an http(s) address", etcdURL)
	case !strings.HasSuffix(key, "/"):
		return nil, fmt.Errorf("overlap: etcd key %q does not end in /", key)
	case decode == nil:
		return nil, errors.New("overlap: nil decode")
	}
	policy, err := backoff.NewExponential(reconnectConfig)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}).DialContext,
		ResponseHeaderTimeout: responseHeaderTimeout,
	}
	endpoint := strings.TrimSuffix(base.String(), "/")
	s := &etcdSource{
		http:     &http.Client{Transport: transport},
		rangeURL: endpoint + "/v3/kv/range",
		watchURL: endpoint + "/v3/watch",
		key:      []byte(key),
		end:      prefixEnd([]byte(key)),
		what:     what,
		decode:   decode,
		replay:   replay,
		clock:    clk,
		policy:   policy,
	}
	if err := s.list(ctx); err != nil {
		transport.CloseIdleConnections()
		return nil, fmt.Errorf("range %s in etcd: %w", what, err)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &Watch{replay: replay, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		// The streams end with wctx; the range's kept-alive connection
		// would otherwise outlive Close.
		defer transport.CloseIdleConnections()
		s.run(wctx)
	}()
	return w, nil
}

// etcdSource feeds a Replay from etcd's JSON gateway.
type etcdSource struct {
	http               *http.Client
	rangeURL, watchURL string
	// key and end delimit the keys read: key <= k < end.
	key, end []byte
	what     string
	decode   func([]byte) (client.Object, error)
	replay   *Replay
	clock    clock.Clock
	policy   *backoff.Exponential
	// next is the revision the next watch starts from: one past the last
	// revision applied, so that a new watch neither repeats nor skips a
	// change. Only the goroutine that runs the watch uses it once list
	// has returned.
	next int64
}

// list applies every object under the prefix, as one snapshot, and sets
// next past it.
func (s *etcdSource) list(ctx context.Context) error {
	req := rangeRequest{Key: s.key, RangeEnd: s.end, Limit: rangePageSize}
	for {
		var page rangeResponse
		if err := s.call(ctx, s.rangeURL, req, &page); err != nil {
			return err
		}
		// Later pages are read at the first page's revision, so that the
		// pages make one snapshot, and the watch resumes right after it.
		if req.Revision == 0 {
			req.Revision = int64(page.Header.Revision)
		}
		for _, kv := range page.Kvs {
			obj, err := s.object(kv)
			if err != nil {
				return err
			}
			s.replay.ApplyListed(obj)
		}
		if !page.More || len(page.Kvs) == 0 {
			s.next = req.Revision + 1
			return nil
		}
		req.Key = append(slices.Clone(page.Kvs[len(page.Kvs)-1].Key), 0)
	}
}

// run watches from next until ctx ends or the watch cannot go on.
func (s *etcdSource) run(ctx context.Context) {
	log := logr.FromContextOrDiscard(ctx).WithValues("what", s.what)
	failures := 0
	for {
		created, err := s.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		if lost, ok := errors.AsType[*historyLostError](err); ok {
			s.replay.Gap(fmt.Sprintf("the etcd watch of %s from revision %d was cancelled (%v): later changes were not checked", s.what, s.next, lost))
			return
		}
		if status, ok := errors.AsType[*statusError](err); ok && status.rejected() {
			s.replay.Gap(fmt.Sprintf("etcd rejected the watch of %s (%v): later changes were not checked", s.what, status))
			return
		}
		// A watch that etcd accepted was a working connection; the
		// backoff is for an etcd that is not back yet.
		if created {
			failures = 0
		}
		failures++
		delay := s.policy.Calculate(failures)
		log.Info("etcd watch broken; watching again", "fromRevision", s.next, "attempt", failures, "delay", delay, "error", err)
		timer := s.clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C():
		}
	}
}

// follow opens one watch from next and applies its events until the
// stream ends, which is always an error; created reports whether etcd
// accepted the watch.
func (s *etcdSource) follow(ctx context.Context) (created bool, err error) {
	req := watchRequest{CreateRequest: watchCreateRequest{Key: s.key, RangeEnd: s.end, StartRevision: s.next}}
	body, err := s.post(ctx, s.watchURL, req)
	if err != nil {
		return false, err
	}
	defer body.Close()
	dec := json.NewDecoder(body)
	for {
		var msg watchMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				err = errStreamEnded
			}
			return created, err
		}
		if msg.Error != nil {
			return created, msg.Error
		}
		res := msg.Result
		if res == nil {
			return created, errors.New("a watch message with neither result nor error")
		}
		created = created || res.Created
		if res.Canceled || res.CompactRevision > 0 {
			return created, &historyLostError{compactRevision: int64(res.CompactRevision), reason: res.CancelReason}
		}
		// etcd sends events in revision order, each revision whole.
		for _, ev := range res.Events {
			s.apply(ev)
			s.next = int64(ev.Kv.ModRevision) + 1
		}
	}
}

// apply applies one watch event.
func (s *etcdSource) apply(ev event) {
	if ev.Type == "DELETE" {
		s.replay.ApplyDelete(nameOf(ev.Kv.Key))
		return
	}
	obj, err := s.object(ev.Kv)
	if err != nil {
		s.replay.Gap(fmt.Sprintf("a change of %s at revision %d could not be read (%v): that object was not checked from then on", s.what, ev.Kv.ModRevision, err))
		return
	}
	typ := watch.Modified
	if ev.Kv.CreateRevision == ev.Kv.ModRevision {
		typ = watch.Added
	}
	s.replay.Apply(typ, obj)
}

// object decodes a stored value. The key, not the value, names the
// object: a deletion carries only the key, and must find the object under
// the same name.
func (s *etcdSource) object(kv keyValue) (client.Object, error) {
	obj, err := s.decode(kv.Value)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	if obj == nil {
		return nil, fmt.Errorf("decode %s: no object", kv.Key)
	}
	obj.SetName(nameOf(kv.Key))
	return obj, nil
}

// call posts req and decodes the one JSON response into resp.
func (s *etcdSource) call(ctx context.Context, endpoint string, req, resp any) error {
	body, err := s.post(ctx, endpoint, req)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := json.NewDecoder(body).Decode(resp); err != nil {
		return fmt.Errorf("decode the response of %s: %w", endpoint, err)
	}
	// Read to the end, so that the connection can be used again.
	_, _ = io.Copy(io.Discard, body)
	return nil
}

// post sends req as JSON and returns the body of a 200 response.
func (s *etcdSource) post(ctx context.Context, endpoint string, req any) (io.ReadCloser, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(hreq)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		_ = resp.Body.Close()
		return nil, &statusError{code: resp.StatusCode, body: strings.TrimSpace(string(msg))}
	}
	return resp.Body, nil
}

// nameOf is the last segment of a key: the object's name.
func nameOf(key []byte) string {
	k := string(key)
	return k[strings.LastIndexByte(k, '/')+1:]
}

// prefixEnd is the range end that covers every key starting with prefix:
// the prefix with its last byte that is not 0xff incremented, and what
// follows dropped.
func prefixEnd(prefix []byte) []byte {
	end := slices.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	// Only 0xff bytes: etcd reads "\x00" as "to the last key".
	return []byte{0}
}

// errStreamEnded is a watch stream that ended without an error message,
// as when etcd stops.
var errStreamEnded = errors.New("the watch stream ended")

// historyLostError is a watch etcd cancelled: mostly because the revision
// asked for was compacted away.
type historyLostError struct {
	compactRevision int64
	reason          string
}

func (e *historyLostError) Error() string {
	msg := "cancelled"
	if e.compactRevision > 0 {
		msg = fmt.Sprintf("history compacted up to revision %d", e.compactRevision)
	}
	if e.reason != "" {
		msg += ": " + e.reason
	}
	return msg
}

// statusError is a response other than 200 OK.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.code, e.body)
}

// rejected reports whether the request itself was refused (4xx): asking
// again cannot help, unlike a server error from an etcd still starting.
func (e *statusError) rejected() bool {
	return e.code >= 400 && e.code < 500 && e.code != http.StatusTooManyRequests && e.code != http.StatusRequestTimeout
}

// The types below are the JSON forms of etcd's v3 messages as its gateway
// sends them: bytes as base64, 64-bit integers as strings.

// revision reads an etcd 64-bit integer, sent as a JSON string (or, by
// other encoders, as a number).
type revision int64

func (r *revision) UnmarshalJSON(data []byte) error {
	s := string(data)
	if unquoted, err := strconv.Unquote(s); err == nil {
		s = unquoted
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("etcd revision %s: %w", data, err)
	}
	*r = revision(v)
	return nil
}

type rangeRequest struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end"`
	Limit    int64  `json:"limit,string,omitempty"`
	Revision int64  `json:"revision,string,omitempty"`
}

type responseHeader struct {
	Revision revision `json:"revision"`
}

type keyValue struct {
	Key            []byte   `json:"key"`
	Value          []byte   `json:"value"`
	CreateRevision revision `json:"create_revision"`
	ModRevision    revision `json:"mod_revision"`
}

type rangeResponse struct {
	Header responseHeader `json:"header"`
	Kvs    []keyValue     `json:"kvs"`
	More   bool           `json:"more"`
}

type watchRequest struct {
	CreateRequest watchCreateRequest `json:"create_request"`
}

type watchCreateRequest struct {
	Key           []byte `json:"key"`
	RangeEnd      []byte `json:"range_end"`
	StartRevision int64  `json:"start_revision,string"`
}

// watchMessage is one object of a watch stream: a result, or the error
// the gateway sends when its stream to etcd breaks.
type watchMessage struct {
	Result *watchResult `json:"result"`
	Error  *streamError `json:"error"`
}

type watchResult struct {
	Created         bool     `json:"created"`
	Canceled        bool     `json:"canceled"`
	CompactRevision revision `json:"compact_revision"`
	CancelReason    string   `json:"cancel_reason"`
	Events          []event  `json:"events"`
}

// event has no type for a PUT: the gateway leaves out enum zero values.
type event struct {
	Type string   `json:"type"`
	Kv   keyValue `json:"kv"`
}

type streamError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *streamError) Error() string {
	return fmt.Sprintf("etcd: %s (gRPC code %d)", e.Message, e.Code)
}
