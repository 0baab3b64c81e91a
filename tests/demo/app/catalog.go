package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirnet/weir/tests/demo/app/catalogpb"
)

// numProducts is the size of the demo catalog; ids 1..numProducts exist.
const numProducts = 20

// maxList bounds one ListProducts answer.
const maxList = 10

type catalogServer struct {
	catalogpb.UnimplementedCatalogServer
}

func product(id uint32) *catalogpb.Product {
	return &catalogpb.Product{Id: id, Name: fmt.Sprintf("product %d", id), PriceCents: 100 + 37*id}
}

func (catalogServer) GetProduct(_ context.Context, req *catalogpb.GetProductRequest) (*catalogpb.Product, error) {
	if req.GetId() < 1 || req.GetId() > numProducts {
		return nil, status.Errorf(codes.NotFound, "no product %d", req.GetId())
	}
	return product(req.GetId()), nil
}

func (catalogServer) ListProducts(_ context.Context, req *catalogpb.ListProductsRequest) (*catalogpb.ListProductsResponse, error) {
	n := req.GetLimit()
	if n == 0 || n > maxList {
		n = maxList
	}
	out := &catalogpb.ListProductsResponse{}
	for id := uint32(1); id <= n; id++ {
		out.Products = append(out.Products, product(id))
	}
	return out, nil
}

func runCatalog(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("catalog", flag.ContinueOnError)
	listen := fs.String("listen", ":9090", "gRPC listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return serveCatalog(ctx, *listen, log, nil)
}

// serveCatalog serves the Catalog gRPC service (HTTP/2 cleartext) until ctx
// ends.
func serveCatalog(ctx context.Context, addr string, log *slog.Logger, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	log.Info("serving gRPC", "addr", ln.Addr().String())
	if ready != nil {
		ready(ln.Addr())
	}
	srv := grpc.NewServer()
	catalogpb.RegisterCatalogServer(srv, catalogServer{})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve gRPC %s: %w", addr, err)
	case <-ctx.Done():
		srv.GracefulStop()
		return nil
	}
}
