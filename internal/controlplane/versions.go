package controlplane

// The control plane versions this binary runs: the pins of
// tools/kube-apiserver/go.mod and tools/etcd/go.mod, as hack/controlplane.sh
// reads them. A binary run outside the source tree cannot read those files,
// so they are written here too; TestPinnedVersions fails when the two
// disagree.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.6.16"
)
