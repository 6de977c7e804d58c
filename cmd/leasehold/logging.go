package main

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/spf13/cobra"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// controllerRuntimeLog is controller-runtime's logger for the whole process.
// controller-runtime keeps the first logger it is given and ignores later
// ones, and when it was given none it prints a stack trace ("log.SetLogger(...)
// was never called") the first time it logs 30 s after the start. The root
// command therefore gives it one before any command runs, for every command,
// and that one forwards to whichever logger was set last: the command's
// default (the root's PersistentPreRunE), then the command's own, as the
// orchestrator and the executor make theirs from their flags.
var controllerRuntimeLog = &switchLogger{}

var installControllerRuntimeLog sync.Once

// useControllerRuntimeLogger sends controller-runtime's log to l from now on.
func useControllerRuntimeLogger(l logr.Logger) {
	controllerRuntimeLog.set(l)
	installControllerRuntimeLog.Do(func() {
		ctrllog.SetLogger(logr.New(switchSink{sw: controllerRuntimeLog}))
	})
}

// defaultLogger is a command's logger until it makes its own: JSON lines on
// the command's stderr, like the services' logs, at verbosity 0, so that
// controller-runtime's warnings and errors are seen and its debug output is
// not.
func defaultLogger(cmd *cobra.Command) logr.Logger {
	return funcr.NewJSON(func(obj string) { fmt.Fprintln(cmd.ErrOrStderr(), obj) },
		funcr.Options{LogTimestamp: true}).WithName(cmd.Name())
}

// switchLogger holds the logger a switchSink forwards to.
type switchLogger struct {
	cur atomic.Pointer[logr.Logger]
}

func (s *switchLogger) set(l logr.Logger) { s.cur.Store(&l) }

// get returns the current logger, or one that discards before any is set.
func (s *switchLogger) get() logr.Logger {
	if l := s.cur.Load(); l != nil {
		return *l
	}
	return logr.Discard()
}

// switchSink is a logr.LogSink that sends each call to the logger its
// switchLogger holds at the time of the call, with the names and values
// added to the sink along the way: a logger derived before a switch
// follows it.
type switchSink struct {
	sw     *switchLogger
	names  []string
	values []any
}

func (s switchSink) target() logr.LogSink {
	l := s.sw.get()
	for _, n := range s.names {
		l = l.WithName(n)
	}
	if len(s.values) > 0 {
		l = l.WithValues(s.values...)
	}
	return l.GetSink()
}

func (s switchSink) Init(logr.RuntimeInfo) {}

func (s switchSink) Enabled(level int) bool {
	t := s.target()
	return t != nil && t.Enabled(level)
}

func (s switchSink) Info(level int, msg string, keysAndValues ...any) {
	if t := s.target(); t != nil {
		t.Info(level, msg, keysAndValues...)
	}
}

func (s switchSink) Error(err error, msg string, keysAndValues ...any) {
	if t := s.target(); t != nil {
		t.Error(err, msg, keysAndValues...)
	}
}

func (s switchSink) WithName(name string) logr.LogSink {
	s.names = append(s.names[:len(s.names):len(s.names)], name)
	return s
}

func (s switchSink) WithValues(keysAndValues ...any) logr.LogSink {
	s.values = append(s.values[:len(s.values):len(s.values)], keysAndValues...)
	return s
}
