package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNoAssets is wrapped by Assets when the binaries are not named by the
// environment, there is no source tree to build them in, and the cache
// does not hold the pinned versions.
var ErrNoAssets = errors.New("control plane binaries not found")

// CacheDir is the folder hack/controlplane.sh builds the pinned versions
// into: <root>/controlplane/kubernetes-<version>-etcd-<version>, where root
// is $LEASEHOLD_CACHE_DIR, else $XDG_CACHE_HOME/leasehold, else
// $HOME/.cache/leasehold. An empty variable counts as unset, as in the
// script. The folder may not exist.
func CacheDir() (string, error) { return cacheDir(os.Getenv) }

func cacheDir(getenv func(string) string) (string, error) {
	root := getenv("LEASEHOLD_CACHE_DIR")
	if root == "" {
		base := getenv("XDG_CACHE_HOME")
		if base == "" {
			home := getenv("HOME")
			if home == "" {
				return "", errors.New("none of LEASEHOLD_CACHE_DIR, XDG_CACHE_HOME and HOME is set")
			}
			base = filepath.Join(home, ".cache")
		}
		root = filepath.Join(base, "leasehold")
	}
	return filepath.Join(root, "controlplane", "kubernetes-"+KubernetesVersion+"-etcd-"+EtcdVersion), nil
}

// checkBinaries checks, as hack/controlplane.sh does, that dir holds a
// kube-apiserver and an etcd whose --version reports the pinned versions:
// a half-written or hand-copied binary of another version is not used.
func checkBinaries(ctx context.Context, dir string) error {
	checks := []struct {
		name string
		want string
		// firstLine: etcd prints its Git SHA, Go version and platform
		// after the version line.
		firstLine bool
	}{
		{"kube-apiserver", "Kubernetes " + KubernetesVersion, false},
		{"etcd", "etcd Version: " + strings.TrimPrefix(EtcdVersion, "v"), true},
	}
	for _, c := range checks {
		path := filepath.Join(dir, c.name)
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("no %s in %s", c.name, dir)
		}
		out, err := exec.CommandContext(ctx, path, "--version").Output()
		if err != nil {
			return fmt.Errorf("%s --version: %w", path, err)
		}
		got := strings.TrimRight(string(out), "\n")
		if c.firstLine {
			got, _, _ = strings.Cut(got, "\n")
		}
		if got != c.want {
			return fmt.Errorf("%s --version reports %q, want %q", path, firstLines(out), c.want)
		}
	}
	return nil
}

// firstLines shortens a program's output for an error message.
func firstLines(out []byte) string {
	lines := bytes.SplitN(bytes.TrimSpace(out), []byte("\n"), 3)
	if len(lines) > 2 {
		lines = lines[:2]
	}
	return string(bytes.Join(lines, []byte(" / ")))
}

// cached returns the cache folder when it holds the pinned binaries, and
// otherwise an ErrNoAssets that says how to get them: this runs where
// there is no source tree to build them in.
func cached(ctx context.Context, whyNoTree error) (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", fmt.Errorf("%w: no LEASEHOLD_ASSETS_DIR, no source tree (%v), and no cache folder: %v", ErrNoAssets, whyNoTree, err)
	}
	if err := checkBinaries(ctx, dir); err != nil {
		return "", fmt.Errorf("%w: kube-apiserver %s and etcd %s are not in the cache (%v), "+
			"and there is no leasehold source tree here to build them in (%v).\n"+
			"To get them, either run `make controlplane` once in a clone of leasehold at the version of this binary, "+
			"with the same LEASEHOLD_CACHE_DIR, XDG_CACHE_HOME and HOME as here: it builds both into %s (10 to 30 minutes on 2 cores); "+
			"or run this command from inside that clone; "+
			"or set LEASEHOLD_ASSETS_DIR to a folder that holds kube-apiserver and etcd of those versions",
			ErrNoAssets, KubernetesVersion, EtcdVersion, err, whyNoTree, dir)
	}
	return dir, nil
}
