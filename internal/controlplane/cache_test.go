package controlplane

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The versions compiled in are the pins of the tools modules, which
// hack/controlplane.sh builds from: a binary run outside the source tree
// looks for the folder the script would have built.
func TestPinnedVersions(t *testing.T) {
	for _, c := range []struct{ gomod, module, want string }{
		{"../../tools/kube-apiserver/go.mod", "k8s.io/kubernetes", KubernetesVersion},
		{"../../tools/etcd/go.mod", "go.etcd.io/etcd/server/v3", EtcdVersion},
	} {
		data, err := os.ReadFile(c.gomod)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(c.module) + `\s+(v\S+)`).FindStringSubmatch(string(data))
		if m == nil {
			t.Errorf("%s does not require %s", c.gomod, c.module)
			continue
		}
		if m[1] != c.want {
			t.Errorf("%s pins %s %s, but versions.go says %s: set it to %s", c.gomod, c.module, m[1], c.want, m[1])
		}
	}
}

// scriptRun is one run of hack/controlplane.sh with the fake go command.
type scriptRun struct {
	stdout, stderr string
	err            error
}

// runScript runs hack/controlplane.sh with testdata/fakego first on PATH,
// LEASEHOLD_ASSETS_DIR unset and the cache variables of env (empty: unset).
func runScript(t *testing.T, env map[string]string) scriptRun {
	t.Helper()
	fakego, err := filepath.Abs("testdata/fakego")
	if err != nil {
		t.Fatal(err)
	}
	var environ []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "LEASEHOLD_ASSETS_DIR", "LEASEHOLD_CACHE_DIR", "XDG_CACHE_HOME", "HOME", "PATH", "LEASEHOLD_PROGRESS_SECONDS":
		default:
			environ = append(environ, kv)
		}
	}
	environ = append(environ,
		"PATH="+fakego+string(os.PathListSeparator)+os.Getenv("PATH"),
		"FAKE_K8S_VERSION="+KubernetesVersion,
		"FAKE_ETCD_VERSION="+EtcdVersion,
	)
	for k, v := range env {
		if v != "" {
			environ = append(environ, k+"="+v)
		}
	}
	errFile, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	if _, ok := env["FAKE_BUILD_UNTIL"]; ok {
		// The fake build waits until the script's stderr shows progress.
		environ = append(environ, "FAKE_BUILD_UNTIL="+errFile.Name())
	}
	cmd := exec.CommandContext(t.Context(), "bash", "../../hack/controlplane.sh")
	cmd.Env = environ
	cmd.Stderr = errFile
	out, runErr := cmd.Output()
	stderr, err := os.ReadFile(errFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	return scriptRun{stdout: string(out), stderr: string(stderr), err: runErr}
}

// folderOf checks the script's stdout contract, one line that is the
// folder of the binaries, and returns that folder.
func (r scriptRun) folderOf(t *testing.T) string {
	t.Helper()
	if r.err != nil {
		t.Fatalf("hack/controlplane.sh: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout has %d lines, want only the folder:\n%s", len(lines), r.stdout)
	}
	return lines[0]
}

// CacheDir names the folder the script builds into, for each way of
// choosing the cache root.
func TestCacheDirMatchesScript(t *testing.T) {
	leaf := filepath.Join("controlplane", "kubernetes-"+KubernetesVersion+"-etcd-"+EtcdVersion)
	for _, c := range []struct {
		name string
		env  func(tmp string) map[string]string
		want func(tmp string) string
	}{
		{"LEASEHOLD_CACHE_DIR first", func(tmp string) map[string]string {
			return map[string]string{"LEASEHOLD_CACHE_DIR": filepath.Join(tmp, "lh"), "XDG_CACHE_HOME": filepath.Join(tmp, "xdg"), "HOME": filepath.Join(tmp, "home")}
		}, func(tmp string) string { return filepath.Join(tmp, "lh", leaf) }},
		{"XDG_CACHE_HOME next", func(tmp string) map[string]string {
			return map[string]string{"XDG_CACHE_HOME": filepath.Join(tmp, "xdg"), "HOME": filepath.Join(tmp, "home")}
		}, func(tmp string) string { return filepath.Join(tmp, "xdg", "leasehold", leaf) }},
		{"HOME last", func(tmp string) map[string]string {
			return map[string]string{"HOME": filepath.Join(tmp, "home")}
		}, func(tmp string) string { return filepath.Join(tmp, "home", ".cache", "leasehold", leaf) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			env := c.env(tmp)
			got, err := cacheDir(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if want := c.want(tmp); got != want {
				t.Errorf("cacheDir = %s, want %s", got, want)
			}
			if script := runScript(t, env).folderOf(t); filepath.Clean(script) != got {
				t.Errorf("hack/controlplane.sh built into %s, cacheDir says %s", script, got)
			}
		})
	}
	if _, err := cacheDir(func(string) string { return "" }); err == nil {
		t.Error("cacheDir without LEASEHOLD_CACHE_DIR, XDG_CACHE_HOME and HOME: no error")
	}
}

// A build says what it builds and how long the last one took, reports its
// elapsed time while it runs, records how long it took next to the
// binaries, and prints nothing but the folder on stdout.
func TestScriptReportsBuildProgress(t *testing.T) {
	cache := t.TempDir()
	env := map[string]string{"LEASEHOLD_CACHE_DIR": cache, "LEASEHOLD_PROGRESS_SECONDS": "1", "FAKE_BUILD_UNTIL": ""}

	first := runScript(t, env)
	dir := first.folderOf(t)
	for _, re := range []string{
		`(?m)^>> building kube-apiserver \(k8s.io/kubernetes/cmd/kube-apiserver\) into ` + regexp.QuoteMeta(dir) + `; no earlier build on this machine`,
		`(?m)^>> still building kube-apiserver: \d+s elapsed$`,
		`(?m)^>> built kube-apiserver in \d+s$`,
		`(?m)^>> building etcd \(go.etcd.io/etcd/server/v3\) into `,
		`(?m)^>> still building etcd: \d+s elapsed$`,
		`(?m)^>> built etcd in \d+s$`,
	} {
		if !regexp.MustCompile(re).MatchString(first.stderr) {
			t.Errorf("first build: stderr does not match %s:\n%s", re, first.stderr)
		}
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		rec, err := os.ReadFile(filepath.Join(dir, name+".build-seconds"))
		if err != nil || !regexp.MustCompile(`^\d+\n$`).Match(rec) {
			t.Errorf("%s.build-seconds = %q (%v), want whole seconds", name, rec, err)
		}
	}

	// Checked, not built again: nothing on stderr.
	if again := runScript(t, env); again.folderOf(t) != dir || again.stderr != "" {
		t.Errorf("second run: folder %s, stderr %q; want %s and nothing", again.folderOf(t), again.stderr, dir)
	}

	// A rebuild says how long the recorded build took.
	if err := os.WriteFile(filepath.Join(dir, "kube-apiserver.build-seconds"), []byte("540\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "kube-apiserver")); err != nil {
		t.Fatal(err)
	}
	rebuild := runScript(t, env)
	rebuild.folderOf(t)
	for _, re := range []string{
		`(?m)^>> building kube-apiserver \(k8s.io/kubernetes/cmd/kube-apiserver\) into .*; last build took 9 min$`,
		`(?m)^>> still building kube-apiserver: \d+s elapsed \(last build took 9 min\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(rebuild.stderr) {
			t.Errorf("rebuild: stderr does not match %s:\n%s", re, rebuild.stderr)
		}
	}
	if strings.Contains(rebuild.stderr, "building etcd") {
		t.Errorf("rebuild built etcd again, which was in place:\n%s", rebuild.stderr)
	}

	// A new version builds into a new folder and compares with the last
	// build of another version.
	other := filepath.Join(cache, "controlplane", "kubernetes-v1.36.0-etcd-v3.6.0")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "kube-apiserver.build-seconds"), []byte("1200\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	bump := runScript(t, env)
	bump.folderOf(t)
	if re := `(?m)^>> building kube-apiserver .*; last build took 20 min$`; !regexp.MustCompile(re).MatchString(bump.stderr) {
		t.Errorf("after a version bump: stderr does not match %s:\n%s", re, bump.stderr)
	}
}

// Outside a source tree, Assets uses the cache folder when its binaries
// report the pinned versions, and otherwise says how to get them.
func TestAssetsOutsideSourceTree(t *testing.T) {
	t.Setenv("LEASEHOLD_ASSETS_DIR", "")
	t.Setenv("KUBEBUILDER_ASSETS", "")
	t.Chdir(t.TempDir())
	cache := t.TempDir()
	t.Setenv("LEASEHOLD_CACHE_DIR", cache)
	dir, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}

	_, err = Assets(t.Context())
	if !errors.Is(err, ErrNoAssets) {
		t.Fatalf("empty cache: Assets error = %v, want ErrNoAssets", err)
	}
	for _, want := range []string{"make controlplane", dir, KubernetesVersion, EtcdVersion, "LEASEHOLD_ASSETS_DIR"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("empty cache: error does not say %q: %v", want, err)
		}
	}

	writeStubs(t, dir, "v1.36.0", EtcdVersion)
	if _, err := Assets(t.Context()); !errors.Is(err, ErrNoAssets) || !strings.Contains(err.Error(), `"Kubernetes v1.36.0"`) {
		t.Errorf("kube-apiserver of another version: Assets error = %v, want ErrNoAssets naming what it reports", err)
	}

	writeStubs(t, dir, KubernetesVersion, EtcdVersion)
	got, err := Assets(t.Context())
	if err != nil || got != dir {
		t.Errorf("Assets = %q, %v; want %s", got, err, dir)
	}
}

// writeStubs writes a kube-apiserver and an etcd into dir that report the
// given versions as the real ones do.
func writeStubs(t *testing.T, dir, k8s, etcd string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, script := range map[string]string{
		"kube-apiserver": "#!/bin/sh\necho 'Kubernetes " + k8s + "'\n",
		"etcd":           "#!/bin/sh\necho 'etcd Version: " + strings.TrimPrefix(etcd, "v") + "'\necho 'Git SHA: stub'\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
