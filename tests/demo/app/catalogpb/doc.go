// Package catalogpb is the demo application's catalog API: catalog.proto
// and the code protoc generates from it (committed; regenerate with
// `make generate`). It exists so the demo has a real gRPC edge.
package catalogpb

//go:generate sh -c "protoc -I . --plugin=protoc-gen-go=$GOTOOLBIN/protoc-gen-go --plugin=protoc-gen-go-grpc=$GOTOOLBIN/protoc-gen-go-grpc --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. catalog.proto"
