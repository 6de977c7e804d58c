package owner

import "k8s.io/apimachinery/pkg/runtime/schema"

// kind is what a lookup needs to know about a kind: where to read it and
// whether its objects live in a namespace.
type kind struct {
	resource   schema.GroupVersionResource
	namespaced bool
}

// kinds is the fixed table of kinds the Cache reads. It replaces discovery:
// these are the kinds that own workloads or are named by signals, they are
// served at these versions by every supported API server, and a fixed
// table costs no requests and cannot fail. Objects of other kinds are not
// looked up; a chain that reaches one falls back to the signal's object.
var kinds = map[schema.GroupKind]kind{
	{Group: "", Kind: "Pod"}:                   {schema.GroupVersionResource{Version: "v1", Resource: "pods"}, true},
	{Group: "", Kind: "ReplicationController"}: {schema.GroupVersionResource{Version: "v1", Resource: "replicationcontrollers"}, true},
	{Group: "", Kind: "PersistentVolumeClaim"}: {schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}, true},
	{Group: "", Kind: "Service"}:               {schema.GroupVersionResource{Version: "v1", Resource: "services"}, true},
	{Group: "", Kind: "Node"}:                  {schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, false},
	{Group: "apps", Kind: "ReplicaSet"}:        {schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}, true},
	{Group: "apps", Kind: "Deployment"}:        {schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, true},
	{Group: "apps", Kind: "StatefulSet"}:       {schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}, true},
	{Group: "apps", Kind: "DaemonSet"}:         {schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}, true},
	{Group: "batch", Kind: "Job"}:              {schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}, true},
	{Group: "batch", Kind: "CronJob"}:          {schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "cronjobs"}, true},
}
