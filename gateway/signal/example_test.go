package signal_test

import (
	"fmt"

	"github.com/leasehold/leasehold/gateway/signal"
)

func ExampleDecodeAlertmanager() {
	body := []byte(`{
	  "version": "4",
	  "status": "firing",
	  "alerts": [
	    {"status": "firing", "labels": {"alertname": "KubePodCrashLooping", "severity": "warning",
	      "namespace": "shop", "pod": "checkout-5b7c9d8f4-qv6zt", "job": "kube-state-metrics"}},
	    {"status": "resolved", "labels": {"alertname": "KubeNodeNotReady", "node": "worker-1"}},
	    {"status": "firing", "labels": {"alertname": "KubeDeploymentReplicasMismatch", "deployment": "checkout"}}
	  ]
	}`)
	items, err := signal.DecodeAlertmanager(body, signal.Options{Cluster: "prod-eu-1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, it := range items {
		switch it.Disposition {
		case signal.Fire:
			fmt.Println(it.Disposition, it.Signal.Name, it.Signal.Target)
		case signal.Ignore:
			fmt.Println(it.Disposition, it.Reason, it.Signal.Target)
		case signal.Reject:
			fmt.Println(it.Disposition, it.Err)
		}
	}
	// Output:
	// fire KubePodCrashLooping prod-eu-1:Pod/shop/checkout-5b7c9d8f4-qv6zt
	// ignore alert resolved prod-eu-1:Node/worker-1
	// reject alerts[2].labels.namespace: required for Deployment (from label deployment)
}
