package faultproxy_test

import (
	"log"
	"net/url"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/leasehold/leasehold/internal/faultproxy"
)

// A test partitions one client from the API server and heals the partition.
func Example() {
	var admin *rest.Config // the control plane's, e.g. controlplane.ControlPlane.Config
	u, err := url.Parse(admin.Host)
	if err != nil {
		log.Fatal(err)
	}
	p, err := faultproxy.New(u.Host)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	cfg, err := faultproxy.RestConfig(admin, p)
	if err != nil {
		log.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Fatal(err)
	}
	_ = cs // hand cs to the replica under test

	p.SetMode(faultproxy.Blackhole) // requests stall and time out
	p.SetMode(faultproxy.Pass)      // new connections work; stalled ones stay stalled
	p.SetMode(faultproxy.Refuse)    // every connection is reset, new ones too
}
