// Package stack runs the project locally: a real control plane with the CRDs
// installed and the services' namespace created, on this machine only.
package stack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/internal/controlplane"
)

// Options configures Up.
type Options struct {
	// Namespace the services live in. Default leasehold-system.
	Namespace string
	// Dir holds control plane data and the kubeconfig. Default: a new
	// temporary folder.
	Dir string
	// KeepData leaves Dir in place on shutdown.
	KeepData bool
}

// Stack is a running local system.
type Stack struct {
	ControlPlane   *controlplane.ControlPlane
	KubeconfigPath string
	Namespace      string
}

// Up starts the control plane and writes a kubeconfig next to its data.
func Up(ctx context.Context, opts Options) (*Stack, error) {
	if opts.Namespace == "" {
		opts.Namespace = "leasehold-system"
	}
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: opts.Dir, KeepData: opts.KeepData, Namespaces: []string{opts.Namespace}})
	if err != nil {
		return nil, err
	}
	path := filepath.Join(cp.Dir(), "kubeconfig")
	if err := os.WriteFile(path, cp.Kubeconfig(), 0o600); err != nil {
		_ = cp.Stop()
		return nil, err
	}
	return &Stack{ControlPlane: cp, KubeconfigPath: path, Namespace: opts.Namespace}, nil
}

// Stop stops everything Up started.
func (s *Stack) Stop() error { return s.ControlPlane.Stop() }

// PrintAccess tells a person how to reach the stack.
func (s *Stack) PrintAccess(w io.Writer) {
	fmt.Fprintf(w, "API server:  %s\n", s.ControlPlane.APIServerURL())
	fmt.Fprintf(w, "kubeconfig:  %s\n", s.KubeconfigPath)
	fmt.Fprintf(w, "namespace:   %s\n", s.Namespace)
	fmt.Fprintf(w, "try:         KUBECONFIG=%s kubectl get remediationrequests,workflowexecutions,leases -n %s\n", s.KubeconfigPath, s.Namespace)
}

// SmokeCheck creates a RemediationRequest, finds it by its fingerprint
// field and label, and deletes it: the contract between the services works
// on this API server.
func (s *Stack) SmokeCheck(ctx context.Context, w io.Writer) error {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	cli, err := client.New(s.ControlPlane.Config, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "smoke-%d", time.Now().UnixNano()))
	fp := hex.EncodeToString(sum[:])
	target := v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Node", Name: "worker-1"}
	rr := &v1alpha1.RemediationRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "smoke-", Namespace: s.Namespace, Labels: map[string]string{
			v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(fp),
			v1alpha1.LabelTarget:      v1alpha1.TargetLabelValue(target),
		}},
		Spec: v1alpha1.RemediationRequestSpec{
			Fingerprint: fp, SignalName: "SmokeCheck", Source: v1alpha1.SourceAlertmanager,
			Target: target, SignalTarget: target, ReceivedAt: metav1.NowMicro(),
		},
	}
	if err := cli.Create(ctx, rr); err != nil {
		return fmt.Errorf("create RemediationRequest: %w", err)
	}
	var byField, byLabel v1alpha1.RemediationRequestList
	if err := cli.List(ctx, &byField, client.InNamespace(s.Namespace), client.MatchingFields{"spec.fingerprint": fp}); err != nil {
		return fmt.Errorf("list by fingerprint field: %w", err)
	}
	if err := cli.List(ctx, &byLabel, client.InNamespace(s.Namespace), client.MatchingLabels{v1alpha1.LabelFingerprint: v1alpha1.FingerprintLabelValue(fp)}); err != nil {
		return fmt.Errorf("list by fingerprint label: %w", err)
	}
	if len(byField.Items) != 1 || len(byLabel.Items) != 1 {
		return fmt.Errorf("found %d by field and %d by label, want 1 and 1", len(byField.Items), len(byLabel.Items))
	}
	if err := cli.Delete(ctx, rr, client.Preconditions{UID: &rr.UID}); err != nil {
		return fmt.Errorf("delete RemediationRequest: %w", err)
	}
	fmt.Fprintf(w, "smoke check: created %s/%s, found it by fingerprint field and label, deleted it\n", s.Namespace, rr.Name)
	return nil
}
