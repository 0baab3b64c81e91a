package main

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/netconf"
)

// callDaemon runs one call against weir-daemon's enrollment socket, bounded
// by the configured timeout. Each plugin invocation makes at most a couple
// of calls, so a connection per call keeps the code obvious at no real cost.
func callDaemon(ctx context.Context, conf *netconf.NetConf, call func(context.Context, enrollpb.EnrollmentClient) error) error {
	conn, err := grpc.NewClient("unix://"+conf.DaemonSocket,
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		// Only a malformed target gets here; netconf validated the path.
		return &daemonError{socket: conf.DaemonSocket, unreachable: true, err: fmt.Errorf("create gRPC client: %w", err)}
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(ctx, conf.Timeout)
	defer cancel()
	if err := call(ctx, enrollpb.NewEnrollmentClient(conn)); err != nil {
		return &daemonError{socket: conf.DaemonSocket, unreachable: isUnreachable(err), err: err}
	}
	return nil
}

// daemonError is a failed daemon call, split into the two cases the failure
// policy treats differently: the daemon could not be reached (spool and
// retry later) or it answered with an error (the request itself is wrong;
// replaying it would fail again).
type daemonError struct {
	socket      string
	unreachable bool
	err         error
}

func (e *daemonError) Error() string {
	if e.unreachable {
		return fmt.Sprintf("weir-daemon unreachable at unix socket %s: %v", e.socket, e.err)
	}
	return fmt.Sprintf("weir-daemon at unix socket %s rejected the call: %v", e.socket, e.err)
}

func (e *daemonError) Unwrap() error { return e.err }

// isUnreachable reports whether err means the call never got a considered
// answer: no listener, a daemon that did not answer in time, or one that
// says it is not ready (Unavailable).
func isUnreachable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// daemonUnreachable reports whether err is a daemonError for a daemon that
// could not be reached.
func daemonUnreachable(err error) bool {
	var de *daemonError
	return errors.As(err, &de) && de.unreachable
}
