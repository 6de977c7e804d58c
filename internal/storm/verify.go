package storm

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/kubeclient"
)

// selectorChunk is how many fingerprints one list asks for with an "in"
// selector: about 2 KiB of query, far below any URL limit.
const selectorChunk = 50

// kubeAccess reads RemediationRequests and the API server's /metrics with
// plain REST calls: no discovery, no cache, so what it sees is what the API
// server holds at that moment.
type kubeAccess struct {
	rest   rest.Interface
	params runtime.ParameterCodec
}

func newKubeAccess(base *rest.Config) (*kubeAccess, error) {
	cfg, err := kubeclient.Configure(base, kubeclient.Options{UserAgent: "leasehold-storm"})
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	cfg.GroupVersion = &v1alpha1.GroupVersion
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("rest client: %w", err)
	}
	return &kubeAccess{rest: rc, params: runtime.NewParameterCodec(scheme)}, nil
}

// listRRs returns the RemediationRequests in namespace labelled with any of
// the fingerprints, following continue tokens.
func (k *kubeAccess) listRRs(ctx context.Context, namespace string, fingerprints []string) ([]v1alpha1.RemediationRequest, error) {
	var out []v1alpha1.RemediationRequest
	for chunk := range slices.Chunk(fingerprints, selectorChunk) {
		values := make([]string, len(chunk))
		for i, fp := range chunk {
			values[i] = v1alpha1.FingerprintLabelValue(fp)
		}
		opts := metav1.ListOptions{
			LabelSelector: fmt.Sprintf("%s in (%s)", v1alpha1.LabelFingerprint, strings.Join(values, ",")),
			Limit:         500,
		}
		for {
			var list v1alpha1.RemediationRequestList
			err := k.rest.Get().Namespace(namespace).Resource("remediationrequests").
				VersionedParams(&opts, k.params).Do(ctx).Into(&list)
			if err != nil {
				return nil, fmt.Errorf("list remediationrequests in %s: %w", namespace, err)
			}
			out = append(out, list.Items...)
			if list.Continue == "" {
				break
			}
			opts.Continue = list.Continue
		}
	}
	return out, nil
}

// scrape reads the API server's request counters.
func (k *kubeAccess) scrape(ctx context.Context) (RequestCounts, error) {
	data, err := k.rest.Get().AbsPath("/metrics").SetHeader("Accept", "text/plain;version=0.0.4").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("get /metrics: %w", err)
	}
	return ParseRequestCounts(bytes.NewReader(data))
}

// Verification compares the RemediationRequests in the API server with the
// signals sent.
type Verification struct {
	// Namespace is where the RemediationRequests were looked for.
	Namespace string `json:"namespace"`
	// RRsExpected is one per incident; RRsFound is what the API server
	// holds for the run's fingerprints.
	RRsExpected int `json:"rrsExpected"`
	RRsFound    int `json:"rrsFound"`
	// Duplicates counts RRs of one incident beyond the first that were in
	// progress together at the end: the sum over incidents of
	// max(0, non-terminal RRs - 1). With no orchestrator running nothing
	// turns terminal, and this is every RR beyond one.
	Duplicates int `json:"duplicates"`
	// Successive counts the other RRs beyond one per incident: with an
	// orchestrator running, an incident's RR can finish during the storm,
	// and the gateway rightly starts a new one for later signals. A
	// snapshot cannot tell whether two finished RRs overlapped in time;
	// `leasehold up` watches every change to prove that.
	Successive int `json:"successive"`
	// Missing is the number of incidents without any RR.
	Missing int `json:"missing"`
	// CountsExact: every incident's occurrence count equals its signals.
	CountsExact bool `json:"countsExact"`
	// BoundsHeld: for every incident, counted answers <= occurrence count
	// <= attempts. A count below the counted answers lost a signal; one
	// above the attempts counted something never sent.
	BoundsHeld bool `json:"boundsHeld"`
	// Error says why the verification could not be done; the other fields
	// are then zero.
	Error string `json:"error,omitempty"`
}

// IncidentRRs is what the API server holds for one incident.
type IncidentRRs struct {
	// RRs is the number of RemediationRequests with the incident's
	// fingerprint label; Terminal how many of them are Completed, Failed
	// or Cancelled.
	RRs      int `json:"rrs"`
	Terminal int `json:"terminal"`
	// Duplicates and Successive split RRs-1 as in Verification.
	Duplicates int `json:"duplicates"`
	Successive int `json:"successive"`
	// Names of those RemediationRequests, sorted.
	Names []string `json:"names"`
	// OccurrenceCount is the sum of their effective occurrence counts.
	OccurrenceCount int64 `json:"occurrenceCount"`
	// CountExact: OccurrenceCount == Sent.
	CountExact bool `json:"countExact"`
	// BoundsHeld: Counted <= OccurrenceCount <= Attempts.
	BoundsHeld bool `json:"boundsHeld"`
}

// verify fills in each incident's RRs from rrs (RemediationRequests of any
// fingerprint; unrelated ones are ignored) and returns the summary.
func verify(namespace string, incidents []Incident, rrs []v1alpha1.RemediationRequest) *Verification {
	byLabel := make(map[string][]*v1alpha1.RemediationRequest)
	for i := range rrs {
		rr := &rrs[i]
		label := rr.Labels[v1alpha1.LabelFingerprint]
		byLabel[label] = append(byLabel[label], rr)
	}
	v := &Verification{Namespace: namespace, RRsExpected: len(incidents), CountsExact: true, BoundsHeld: true}
	for i := range incidents {
		inc := &incidents[i]
		found := &IncidentRRs{Names: []string{}}
		for _, rr := range byLabel[v1alpha1.FingerprintLabelValue(inc.Fingerprint)] {
			// The label holds a prefix; the spec holds the whole
			// fingerprint.
			if rr.Spec.Fingerprint != inc.Fingerprint {
				continue
			}
			found.RRs++
			if rr.IsTerminal() {
				found.Terminal++
			}
			found.Names = append(found.Names, rr.Name)
			found.OccurrenceCount += rr.EffectiveDeduplication().OccurrenceCount
		}
		slices.Sort(found.Names)
		found.Duplicates = max(0, found.RRs-found.Terminal-1)
		found.Successive = max(0, found.RRs-1) - found.Duplicates
		found.CountExact = found.OccurrenceCount == int64(inc.Sent)
		found.BoundsHeld = int64(inc.Counted) <= found.OccurrenceCount && found.OccurrenceCount <= int64(inc.Attempts)
		inc.Found = found

		v.RRsFound += found.RRs
		v.Duplicates += found.Duplicates
		v.Successive += found.Successive
		if found.RRs == 0 {
			v.Missing++
		}
		v.CountsExact = v.CountsExact && found.CountExact
		v.BoundsHeld = v.BoundsHeld && found.BoundsHeld
	}
	return v
}
