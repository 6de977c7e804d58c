package owner_test

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/leasehold/leasehold/api/v1alpha1"
	"github.com/leasehold/leasehold/gateway/owner"
)

func Example() {
	// In a process: metadata.NewForConfig(cfg), with cfg from
	// kubeclient.Configure. Here a fake holds one Deployment's chain.
	scheme := metadatafake.NewTestScheme()
	_ = metav1.AddMetaToScheme(scheme)
	client := metadatafake.NewSimpleMetadataClient(scheme, deploymentChain()...)

	resolver, err := owner.New(client, owner.Options{Cluster: "local"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	for _, signal := range []struct {
		obj    v1alpha1.TargetRef
		labels map[string]string
	}{
		{obj: v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-abc-1"}},
		// Gone, and nothing says what owned it.
		{obj: v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "gone"}},
		// Gone, but the alert carries kube_pod_info's owner labels, and
		// that ReplicaSet exists.
		{
			obj:    v1alpha1.TargetRef{Cluster: "local", APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-abc-x2kqp"},
			labels: map[string]string{"created_by_kind": "ReplicaSet", "created_by_name": "web-abc"},
		},
		{obj: v1alpha1.TargetRef{Cluster: "prod", APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-abc-1"}},
	} {
		workload, found, err := resolver.Resolve(ctx, signal.obj, signal.labels)
		if err != nil {
			// Not known now: do not record the signal under obj.
			fmt.Println(signal.obj, "->", err)
			continue
		}
		fmt.Println(signal.obj, "->", workload, found)
	}
	// Output:
	// local:Pod/shop/web-abc-1 -> local:Deployment/shop/web true
	// local:Pod/shop/gone -> local:Pod/shop/gone false
	// local:Pod/shop/web-abc-x2kqp -> local:Deployment/shop/web true
	// prod:Pod/shop/web-abc-1 -> prod:Pod/shop/web-abc-1 false
}
