package bpf

import "github.com/weirnet/weir/bpf/event"

// The process lifecycle types live in package event, so that user space can
// consume them without importing this package; these names are kept so
// existing callers of package bpf keep compiling.
type (
	// ProcessKind is event.ProcessKind.
	ProcessKind = event.ProcessKind
	// ProcessEvent is event.ProcessEvent.
	ProcessEvent = event.ProcessEvent
	// ProcessSink is event.ProcessSink.
	ProcessSink = event.ProcessSink
)

// Process kinds, re-exported from package event.
const (
	ProcessExisting = event.ProcessExisting
	ProcessFork     = event.ProcessFork
	ProcessExec     = event.ProcessExec
	ProcessExit     = event.ProcessExit
)
