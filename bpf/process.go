package bpf

import "github.com/weirnet/weir/bpf/event"

// ProcessKind says what happened to a monitored process.
type ProcessKind uint8

const (
	// ProcessExisting: found running in a netns when it was enrolled.
	ProcessExisting ProcessKind = iota
	// ProcessFork: a new process (not a thread) in an enrolled netns.
	ProcessFork
	// ProcessExec: a monitored process executed a new program.
	ProcessExec
	// ProcessExit: the last thread of a monitored process exited. Its
	// connections are gone even though no close was seen for them.
	ProcessExit
)

func (k ProcessKind) String() string {
	switch k {
	case ProcessExisting:
		return "existing"
	case ProcessFork:
		return "fork"
	case ProcessExec:
		return "exec"
	case ProcessExit:
		return "exit"
	default:
		return "unknown"
	}
}

// ProcessEvent reports the lifecycle of a process in an enrolled netns.
//
// It lives here rather than in package event because event.Sink has no
// method for it yet; a sink that wants process events also implements
// ProcessSink.
type ProcessEvent struct {
	Kind ProcessKind
	Proc event.Process
	// PPID is the parent's process id (fork, exec).
	PPID uint32
	// Filename is the executed path (exec).
	Filename string
	// ExitCode is the raw wait status (exit): exit code << 8 | signal.
	ExitCode int32
	// Time is when it happened; 0 for ProcessExisting.
	Time event.Timestamp
}

// ProcessSink is implemented by sinks that also want process events.
// Run checks for it with a type assertion on the event.Sink it is given.
type ProcessSink interface {
	Process(ProcessEvent)
}
