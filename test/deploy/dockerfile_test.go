package deploy_test

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// repoRoot is the repository's root, relative to this package.
const repoRoot = "../.."

// The image's fixed points, which the manifests depend on.
const (
	// imageEntrypoint is where the final stage puts the binary.
	imageEntrypoint = "/leasehold"
	// buildPackage is the main package the image is built from.
	buildPackage = "./cmd/leasehold"
)

// TestDockerfile checks the parts of the Dockerfile that no build here
// exercises: the stages, their base images, the user and the entrypoint.
func TestDockerfile(t *testing.T) {
	df := mustParseDockerfile(t)
	if len(df.stages) != 2 {
		t.Fatalf("stages = %d, want 2 (build, final)", len(df.stages))
	}
	build, final := df.stages[0], df.stages[1]

	goVersion := goDirective(t)
	wantBuilder := "golang:" + goVersion
	if build.image != wantBuilder {
		t.Errorf("build stage FROM %s, want %s: the builder's Go must be the go.mod's (go %s)", build.image, wantBuilder, goVersion)
	}
	if build.name == "" {
		t.Errorf("build stage has no name (FROM ... AS build)")
	}
	switch final.image {
	case "gcr.io/distroless/static:nonroot", "scratch":
	default:
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static:nonroot or scratch: a static binary needs nothing else", final.image)
	}
	for _, in := range final.instructions {
		if in.cmd == "RUN" {
			t.Errorf("line %d: RUN in the final stage: the final image has no shell", in.line)
		}
	}

	uid, err := df.finalUID()
	if err != nil {
		t.Errorf("USER: %v", err)
	} else if uid == 0 {
		t.Errorf("USER is root, want a non-root numeric UID")
	}

	copyFrom, copySrc, copyDst, err := final.copyFrom()
	if err != nil {
		t.Fatal(err)
	}
	if copyFrom != build.name {
		t.Errorf("final stage copies from %q, want the build stage %q", copyFrom, build.name)
	}
	if copyDst != imageEntrypoint {
		t.Errorf("final stage copies the binary to %s, want %s", copyDst, imageEntrypoint)
	}
	entry, err := final.entrypoint()
	if err != nil {
		t.Fatal(err)
	}
	if len(entry) != 1 || entry[0] != imageEntrypoint {
		t.Errorf("ENTRYPOINT %q, want [%q] (exec form: no shell in the image)", entry, imageEntrypoint)
	}

	gb, err := build.goBuild()
	if err != nil {
		t.Fatal(err)
	}
	if gb.env["CGO_ENABLED"] != "0" {
		t.Errorf("go build runs with CGO_ENABLED=%q, want 0: the final image has no libc", gb.env["CGO_ENABLED"])
	}
	if !slices.Contains(gb.args, "-trimpath") {
		t.Errorf("go build lacks -trimpath: %q", gb.args)
	}
	if got := gb.flag("-ldflags"); got != "-s -w" {
		t.Errorf("go build -ldflags=%q, want \"-s -w\"", got)
	}
	if gb.pkg != buildPackage {
		t.Errorf("go build builds %q, want %q", gb.pkg, buildPackage)
	}
	if out := gb.flag("-o"); out != copySrc {
		t.Errorf("go build writes %q but the final stage copies %q", out, copySrc)
	}
}

// TestStaticBuild runs the Dockerfile's own go build command, on a copy of
// the tree that holds only what .dockerignore lets into the build context,
// and checks that the result is what the final stage needs: a static,
// stripped executable that runs.
func TestStaticBuild(t *testing.T) {
	bin := imageBinary(t)

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("not an ELF file: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary has a PT_INTERP program header: it needs a dynamic loader, which the final image lacks")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil {
		t.Errorf("read imported libraries: %v", err)
	} else if len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %q", libs)
	}
	// -s drops the symbol table, -w the DWARF data.
	for _, s := range f.Sections {
		if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			t.Errorf("the binary has section %s: -ldflags=\"-s -w\" did not apply", s.Name)
		}
	}

	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("build info: %v", err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	// With -trimpath, go build does not record -ldflags; the sections
	// above show its effect.
	for key, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[key] != want {
			t.Errorf("build setting %s = %q, want %q", key, settings[key], want)
		}
	}
	if info.Path != "github.com/leasehold/leasehold/cmd/leasehold" {
		t.Errorf("main package %q", info.Path)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", bin, err, out)
	}
	for _, sub := range []string{"gateway", "orchestrator", "executor"} {
		if !strings.Contains(string(out), sub) {
			t.Errorf("--help does not list the %s command the Deployments run:\n%s", sub, out)
		}
	}
}

// TestParsers pins the parsing the two tests above rely on, so that a
// parser bug cannot make them check nothing.
func TestParsers(t *testing.T) {
	for in, want := range map[string][]string{
		`CGO_ENABLED=0 go build -ldflags="-s -w" -o /out/x ./cmd/x`: {"CGO_ENABLED=0", "go", "build", "-ldflags=-s -w", "-o", "/out/x", "./cmd/x"},
		`go build -ldflags '-s -w' a\ b "q\"uote"`:                  {"go", "build", "-ldflags", "-s -w", "a b", `q"uote`},
	} {
		got, err := shellWords(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("shellWords(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := shellWords(`go build "-o`); err == nil {
		t.Errorf("shellWords accepted an unterminated quote")
	}

	df, err := parseDockerfile("# syntax=docker/dockerfile:1\nARG X\nFROM --platform=$BUILDPLATFORM golang:1.26 AS build\nRUN CGO_ENABLED=0 \\\n  # a comment inside\n  go build -o /out/x ./cmd/x\nFROM scratch\nCOPY --from=build /out/x /x\nUSER 65532:65532\nENTRYPOINT [\"/x\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	gb, err := df.stages[0].goBuild()
	if err != nil {
		t.Fatal(err)
	}
	if gb.env["CGO_ENABLED"] != "0" || gb.pkg != "./cmd/x" || gb.flag("-o") != "/out/x" || df.stages[0].platform != "$BUILDPLATFORM" {
		t.Errorf("parsed %+v", gb)
	}
	if uid, err := df.finalUID(); uid != 65532 || err != nil {
		t.Errorf("finalUID = %d, %v", uid, err)
	}
	if _, err := parseDockerfile("FROM a\nRUN go build \\\n"); err == nil {
		t.Errorf("a trailing continuation was accepted")
	}

	patterns := []string{"bin", "*.md", "deploy"}
	for rel, want := range map[string]bool{
		"bin": true, "bin/leasehold": true, "README.md": true, "deploy/gateway/rbac.yaml": true,
		"lease/doc.md": false, "config/crd/x.yaml": false, "cmd/bin": false, "go.mod": false,
	} {
		if got := matchesIgnore(patterns, rel); got != want {
			t.Errorf("matchesIgnore(%s) = %v, want %v", rel, got, want)
		}
	}
}

// imageBuild is the binary built the Dockerfile's way, once per test binary,
// shared by the static checks and the integration tests that run it.
var imageBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// imageBinary builds (once) and returns the binary the image would hold.
func imageBinary(t testing.TB) string {
	t.Helper()
	imageBuild.once.Do(func() {
		imageBuild.path, imageBuild.err = buildAsDockerfile()
	})
	if imageBuild.err != nil {
		t.Fatalf("build as the Dockerfile does: %v", imageBuild.err)
	}
	return imageBuild.path
}

// removeImageBuild removes what imageBinary made; TestMain calls it.
func removeImageBuild() {
	if imageBuild.dir != "" {
		_ = os.RemoveAll(imageBuild.dir)
	}
}

func buildAsDockerfile() (string, error) {
	df, err := parseDockerfileFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return "", err
	}
	gb, err := df.stages[0].goBuild()
	if err != nil {
		return "", err
	}
	ignore, err := readDockerignore(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "leasehold-image-")
	if err != nil {
		return "", err
	}
	imageBuild.dir = dir
	src := filepath.Join(dir, "src")
	if err := copyContext(repoRoot, src, ignore); err != nil {
		return "", fmt.Errorf("build context: %w", err)
	}
	out := filepath.Join(dir, "leasehold")
	args, err := gb.withOutput(out)
	if err != nil {
		return "", err
	}
	env := os.Environ()
	for _, k := range gb.envOrder {
		v, err := expandBuildArg(gb.env[k])
		if err != nil {
			return "", fmt.Errorf("%s: %w", k, err)
		}
		env = append(env, k+"="+v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = src
	cmd.Env = env
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s (in the filtered build context): %w\n%s", strings.Join(args, " "), err, output)
	}
	return out, nil
}

// expandBuildArg stands in for the build arguments BuildKit sets: the
// target platform is this machine's.
func expandBuildArg(v string) (string, error) {
	switch v {
	case "$TARGETOS", "${TARGETOS}":
		return runtime.GOOS, nil
	case "$TARGETARCH", "${TARGETARCH}":
		return runtime.GOARCH, nil
	}
	if strings.Contains(v, "$") {
		return "", fmt.Errorf("value %q uses a variable the test does not know", v)
	}
	return v, nil
}

// goDirective returns the major.minor of the main module's go directive.
func goDirective(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)(\.\d+)?\s*$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// --- Dockerfile parsing: the subset this Dockerfile uses. ---

type instruction struct {
	cmd  string // upper case
	args string
	line int
}

type stage struct {
	image, name, platform string
	instructions          []instruction
}

type dockerfile struct {
	stages []stage
}

func mustParseDockerfile(t testing.TB) *dockerfile {
	t.Helper()
	df, err := parseDockerfileFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return df
}

func parseDockerfileFile(name string) (*dockerfile, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return parseDockerfile(string(data))
}

// parseDockerfile splits a Dockerfile into stages of instructions. Comment
// lines are dropped (also inside a continued instruction, as Docker does)
// and lines ending in a backslash are joined.
func parseDockerfile(text string) (*dockerfile, error) {
	var (
		df      dockerfile
		pending strings.Builder
		start   int
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if pending.Len() == 0 {
			start = n
		} else {
			pending.WriteByte(' ')
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending.WriteString(strings.TrimSpace(cont))
			continue
		}
		pending.WriteString(line)
		full := pending.String()
		pending.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			st, err := parseFrom(in)
			if err != nil {
				return nil, err
			}
			df.stages = append(df.stages, st)
			continue
		}
		if len(df.stages) == 0 {
			if in.cmd == "ARG" {
				continue // global build arguments
			}
			return nil, fmt.Errorf("line %d: %s before FROM", in.line, in.cmd)
		}
		last := &df.stages[len(df.stages)-1]
		last.instructions = append(last.instructions, in)
	}
	if pending.Len() > 0 {
		return nil, errors.New("the last instruction ends with a line continuation")
	}
	if len(df.stages) == 0 {
		return nil, errors.New("no FROM")
	}
	return &df, sc.Err()
}

func parseFrom(in instruction) (stage, error) {
	var st stage
	words := strings.Fields(in.args)
	for len(words) > 0 && strings.HasPrefix(words[0], "--") {
		if p, ok := strings.CutPrefix(words[0], "--platform="); ok {
			st.platform = p
		} else {
			return st, fmt.Errorf("line %d: FROM flag %s not understood", in.line, words[0])
		}
		words = words[1:]
	}
	switch {
	case len(words) == 1:
		st.image = words[0]
	case len(words) == 3 && strings.EqualFold(words[1], "AS"):
		st.image, st.name = words[0], words[2]
	default:
		return st, fmt.Errorf("line %d: FROM %s not understood", in.line, in.args)
	}
	return st, nil
}

// finalUID is the numeric user of the final stage's last USER instruction.
func (df *dockerfile) finalUID() (int, error) {
	final := df.stages[len(df.stages)-1]
	user := ""
	for _, in := range final.instructions {
		if in.cmd == "USER" {
			user = in.args
		}
	}
	if user == "" {
		// distroless:nonroot sets one, but the Deployments name a UID,
		// so the Dockerfile must say which.
		return 0, errors.New("the final stage sets no USER")
	}
	name, _, _ := strings.Cut(user, ":")
	uid, err := strconv.Atoi(name)
	if err != nil {
		return 0, fmt.Errorf("USER %s is not numeric: runAsNonRoot can verify only a numeric user", user)
	}
	return uid, nil
}

// copyFrom returns the one COPY --from=STAGE SRC DST of the stage.
func (s stage) copyFrom() (from, src, dst string, err error) {
	for _, in := range s.instructions {
		if in.cmd != "COPY" {
			continue
		}
		words := strings.Fields(in.args)
		if len(words) == 3 && strings.HasPrefix(words[0], "--from=") {
			if from != "" {
				return "", "", "", errors.New("the final stage has more than one COPY --from")
			}
			from, src, dst = strings.TrimPrefix(words[0], "--from="), words[1], words[2]
		}
	}
	if from == "" {
		return "", "", "", errors.New("the final stage has no COPY --from=STAGE SRC DST")
	}
	return from, src, dst, nil
}

// entrypoint returns the stage's ENTRYPOINT, which must be in exec form.
func (s stage) entrypoint() ([]string, error) {
	var entry []string
	found := false
	for _, in := range s.instructions {
		if in.cmd != "ENTRYPOINT" {
			continue
		}
		found = true
		entry = nil
		if err := json.Unmarshal([]byte(in.args), &entry); err != nil {
			return nil, fmt.Errorf("line %d: ENTRYPOINT is not in exec form (a JSON array): %v", in.line, err)
		}
	}
	if !found {
		return nil, errors.New("the final stage has no ENTRYPOINT")
	}
	return entry, nil
}

// envAssignment is a NAME=VALUE word before a command.
var envAssignment = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)

// goBuildCommand is a RUN instruction of the form
// NAME=VALUE... go build FLAGS... PACKAGE.
type goBuildCommand struct {
	env      map[string]string
	envOrder []string
	args     []string // from "build" on
	pkg      string
}

// goBuild finds the stage's one RUN that runs go build and parses it. It
// accepts a single simple command only: no &&, ;, pipes or redirections,
// so that what the test runs is all that the image build runs.
func (s stage) goBuild() (*goBuildCommand, error) {
	var found *goBuildCommand
	for _, in := range s.instructions {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("line %d: a second RUN with go build", in.line)
		}
		words, err := shellWords(in.args)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", in.line, err)
		}
		gb := &goBuildCommand{env: map[string]string{}}
		for len(words) > 0 && envAssignment.MatchString(words[0]) {
			k, v, _ := strings.Cut(words[0], "=")
			gb.env[k] = v
			gb.envOrder = append(gb.envOrder, k)
			words = words[1:]
		}
		if len(words) < 3 || words[0] != "go" || words[1] != "build" {
			return nil, fmt.Errorf("line %d: want [NAME=VALUE...] go build FLAGS... PACKAGE, got %q", in.line, in.args)
		}
		for _, w := range words {
			if strings.ContainsAny(w, "&;|<>`") {
				return nil, fmt.Errorf("line %d: %q: only a single simple command is understood", in.line, w)
			}
		}
		gb.args = words[1:]
		gb.pkg = words[len(words)-1]
		found = gb
	}
	if found == nil {
		return nil, errors.New("no RUN with go build in the build stage")
	}
	return found, nil
}

// flag returns the value of a flag given as -name=value or -name value.
func (gb *goBuildCommand) flag(name string) string {
	for i, a := range gb.args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(gb.args) {
			return gb.args[i+1]
		}
	}
	return ""
}

// withOutput returns the arguments with the -o value replaced.
func (gb *goBuildCommand) withOutput(out string) ([]string, error) {
	args := append([]string(nil), gb.args...)
	for i, a := range args {
		if strings.HasPrefix(a, "-o=") {
			args[i] = "-o=" + out
			return args, nil
		}
		if a == "-o" && i+1 < len(args) {
			args[i+1] = out
			return args, nil
		}
	}
	return nil, errors.New("go build has no -o")
}

// shellWords splits a command line as sh would, for quoting only: single
// and double quotes and backslash escapes; no expansion.
func shellWords(s string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// --- .dockerignore: the subset this repository uses. ---

// readDockerignore returns the patterns of a .dockerignore file. It accepts
// what Docker matches with plain glob rules (*, ?, [...], no /**/ and no !
// exceptions), and refuses the rest, so that the filtered copy the build
// test uses cannot silently differ from Docker's build context.
func readDockerignore(name string) ([]string, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var patterns []string
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") || strings.Contains(line, "**") {
			return nil, fmt.Errorf(".dockerignore line %d: %q: exceptions and ** are not understood by this test; extend matchesIgnore", n+1, line)
		}
		p := path.Clean(strings.TrimPrefix(line, "/"))
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf(".dockerignore line %d: %w", n+1, err)
		}
		patterns = append(patterns, p)
	}
	return patterns, nil
}

// matchesIgnore reports whether rel (slash-separated, relative to the
// context root) is left out: a pattern matches it or one of its parents.
func matchesIgnore(patterns []string, rel string) bool {
	for p := rel; p != "." && p != "/"; p = path.Dir(p) {
		for _, pat := range patterns {
			if ok, _ := path.Match(pat, p); ok {
				return true
			}
		}
	}
	return false
}

// copyContext copies the files of root that the patterns let through into
// dst: the build context Docker would send.
func copyContext(root, dst string, patterns []string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." && matchesIgnore(patterns, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			return copyFile(p, target)
		}
		return nil // sockets, symlinks: nothing the build reads
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
