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
	for _, obj := range []v1alpha1.TargetRef{
		{Cluster: "local", APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-abc-1"},
		{Cluster: "local", APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "gone"},
		{Cluster: "prod", APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-abc-1"},
	} {
		workload, found := resolver.Resolve(ctx, obj)
		fmt.Println(obj, "->", workload, found)
	}
	// Output:
	// local:Pod/shop/web-abc-1 -> local:Deployment/shop/web true
	// local:Pod/shop/gone -> local:Pod/shop/gone false
	// prod:Pod/shop/web-abc-1 -> prod:Pod/shop/web-abc-1 false
}
