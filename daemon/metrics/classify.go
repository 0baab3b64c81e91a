package metrics

import (
	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// methodClass groups request methods so that a client sending arbitrary
// methods cannot grow the label set.
type methodClass uint8

const (
	methodGET methodClass = iota
	methodPOST
	methodPUT
	methodDELETE
	methodPATCH
	methodHEAD
	methodOPTIONS
	methodOther
	numMethods
)

var methodNames = [numMethods]string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "OTHER"}

func classifyMethod(m string) methodClass {
	switch m {
	case "GET":
		return methodGET
	case "POST":
		return methodPOST
	case "PUT":
		return methodPUT
	case "DELETE":
		return methodDELETE
	case "PATCH":
		return methodPATCH
	case "HEAD":
		return methodHEAD
	case "OPTIONS":
		return methodOPTIONS
	}
	return methodOther
}

// statusClass is "none" (no response seen), an HTTP class 1xx..5xx, or for
// gRPC the grpc-status code.
type statusClass uint8

const (
	statusNone statusClass = 0
	status1xx  statusClass = 1 // .. status5xx = 5
	statusGRPC statusClass = 6 // + code 0..16
	numGRPC                = 17
	numStatus              = int(statusGRPC) + numGRPC + 1 // + grpc code out of range
)

var grpcNames = [numGRPC]string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
	"Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

var statusNames = func() [numStatus]string {
	var n [numStatus]string
	n[statusNone] = "none"
	for i := 1; i <= 5; i++ {
		n[i] = string(rune('0'+i)) + "xx"
	}
	for i, g := range grpcNames {
		n[int(statusGRPC)+i] = "grpc_" + g
	}
	n[numStatus-1] = "grpc_other"
	return n
}()

// classifyStatus returns r's status class and whether the exchange
// succeeded: HTTP status below 500, or grpc-status 0 for gRPC (SkyWalking's
// rule). An exchange without a response, or reset, failed.
func classifyStatus(r *record.Record) (statusClass, bool) {
	switch {
	case r.GRPC && r.GRPCStatus >= 0:
		if r.GRPCStatus >= numGRPC {
			return statusClass(numStatus - 1), false
		}
		return statusGRPC + statusClass(r.GRPCStatus), r.GRPCStatus == 0 && !r.Reset
	case r.Status >= 100 && r.Status <= 599:
		return statusClass(r.Status / 100), r.Status < 500 && !r.Reset
	}
	return statusNone, false
}

// span returns end-start in nanoseconds when both are set and ordered.
func span(start, end event.Timestamp) (uint64, bool) {
	if start == 0 || end < start {
		return 0, false
	}
	return uint64(end - start), true
}
