package runner

import (
	"bufio"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// DescribeMachine reports the host: cores from runtime.NumCPU, memory and
// CPU model from /proc where it exists.
func DescribeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, GoVersion: runtime.Version()}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		m.MemoryBytes = parseMemTotal(f)
		f.Close()
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		m.CPUModel = parseCPUModel(f)
		f.Close()
	}
	return m
}

// parseMemTotal reads "MemTotal: <n> kB" from a /proc/meminfo page; 0 if
// absent.
func parseMemTotal(r io.Reader) uint64 {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		return n
	}
	return 0
}

// parseCPUModel reads the first "model name" of a /proc/cpuinfo page.
func parseCPUModel(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return ""
}
