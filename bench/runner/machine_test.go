package runner

import (
	"strings"
	"testing"
)

func TestParseMemTotal(t *testing.T) {
	page := "MemFree:  100 kB\nMemTotal:       8052728 kB\nBuffers: 1 kB\n"
	if got := parseMemTotal(strings.NewReader(page)); got != 8052728*1024 {
		t.Errorf("MemTotal %d, want %d", got, 8052728*1024)
	}
	if got := parseMemTotal(strings.NewReader("MemFree: 1 kB\n")); got != 0 {
		t.Errorf("MemTotal without the line: %d, want 0", got)
	}
}

func TestParseCPUModel(t *testing.T) {
	page := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: other\n"
	if got := parseCPUModel(strings.NewReader(page)); got != "Intel(R) Xeon(R) CPU @ 2.20GHz" {
		t.Errorf("model %q", got)
	}
}

func TestDescribeMachine(t *testing.T) {
	m := DescribeMachine()
	if m.Cores < 1 || m.OS == "" || m.Arch == "" || m.GoVersion == "" {
		t.Errorf("machine %+v", m)
	}
}
