package crd_test

import (
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/leasehold/leasehold/config/crd"
)

func TestDefinitions(t *testing.T) {
	defs, err := crd.Definitions()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"remediationrequests.leasehold.dev": "RemediationRequest",
		"workflowexecutions.leasehold.dev":  "WorkflowExecution",
	}
	if len(defs) != len(want) {
		t.Fatalf("got %d CRDs, want %d", len(defs), len(want))
	}
	for _, d := range defs {
		kind, ok := want[d.Name]
		if !ok || d.Spec.Names.Kind != kind {
			t.Errorf("unexpected CRD %s (kind %s)", d.Name, d.Spec.Names.Kind)
			continue
		}
		if d.Spec.Scope != apiextensionsv1.NamespaceScoped {
			t.Errorf("%s: scope %s, want Namespaced", d.Name, d.Spec.Scope)
		}
		if len(d.Spec.Versions) != 1 || d.Spec.Versions[0].Subresources == nil || d.Spec.Versions[0].Subresources.Status == nil {
			t.Errorf("%s: want one version with a status subresource", d.Name)
		}
	}
}
