// Package enrollpb is the enrollment API between the weir CNI plugin and
// weir-daemon: the protobuf definition in enroll.proto and the code protoc
// generates from it (committed; regenerate with `make generate`). It is one
// part of the contract described in package enrollapi.
package enrollpb

//go:generate sh -c "protoc -I . -I /usr/include --plugin=protoc-gen-go=$GOTOOLBIN/protoc-gen-go --plugin=protoc-gen-go-grpc=$GOTOOLBIN/protoc-gen-go-grpc --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. enroll.proto"
