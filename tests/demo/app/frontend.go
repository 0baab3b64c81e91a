package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weirnet/weir/tests/demo/app/catalogpb"
)

// Bounds of frontend's calls to its backends.
const (
	backendTimeout  = 2 * time.Second
	maxReviewsBytes = 64 << 10
	maxIdlePerHost  = 8
)

type frontend struct {
	catalog    catalogpb.CatalogClient
	reviewsURL string
	http       *http.Client
	log        *slog.Logger
}

// page is what frontend answers: the product(s) and, for a product page,
// its reviews or why they are missing. A failing reviews backend degrades
// the page instead of failing it, as a real shop would; the error stays
// visible on the frontend→reviews edge.
type page struct {
	Products      []*catalogpb.Product `json:"products"`
	Reviews       json.RawMessage      `json:"reviews,omitempty"`
	ReviewsStatus string               `json:"reviewsStatus,omitempty"`
}

func (f *frontend) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", f.index)
	mux.HandleFunc("GET /product/{id}", f.product)
	return mux
}

func (f *frontend) index(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), backendTimeout)
	defer cancel()
	list, err := f.catalog.ListProducts(ctx, &catalogpb.ListProductsRequest{Limit: 5})
	if err != nil {
		http.Error(w, fmt.Sprintf("catalog: %v", err), http.StatusBadGateway)
		return
	}
	writeJSON(w, page{Products: list.GetProducts()})
}

func (f *frontend) product(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 32)
	if err != nil {
		http.Error(w, fmt.Sprintf("bad product id %q", r.PathValue("id")), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), backendTimeout)
	defer cancel()
	p, err := f.catalog.GetProduct(ctx, &catalogpb.GetProductRequest{Id: uint32(id)})
	if err != nil {
		http.Error(w, fmt.Sprintf("catalog: %v", err), http.StatusBadGateway)
		return
	}
	out := page{Products: []*catalogpb.Product{p}}
	body, err := f.reviews(ctx, id)
	if err != nil {
		out.ReviewsStatus = err.Error()
	} else {
		out.Reviews = body
	}
	writeJSON(w, out)
}

func (f *frontend) reviews(ctx context.Context, id uint64) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/reviews/%d", f.reviewsURL, id), nil)
	if err != nil {
		return nil, fmt.Errorf("reviews request: %w", err)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reviews: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReviewsBytes))
	if err != nil {
		return nil, fmt.Errorf("reviews: read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reviews: %s", resp.Status)
	}
	if !json.Valid(body) {
		return nil, errors.New("reviews: answer is not JSON")
	}
	return body, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func runFrontend(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("frontend", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "HTTP listen address")
	catalogAddr := fs.String("catalog", "", "catalog gRPC address host:port (required)")
	reviewsURL := fs.String("reviews", "", "reviews base URL, e.g. http://10.0.0.4:8081 (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *catalogAddr == "" || *reviewsURL == "" {
		return errors.New("frontend needs --catalog and --reviews")
	}
	return serveFrontend(ctx, *listen, *catalogAddr, *reviewsURL, log, nil)
}

func serveFrontend(ctx context.Context, addr, catalogAddr, reviewsURL string, log *slog.Logger, ready func(net.Addr)) error {
	conn, err := grpc.NewClient(catalogAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("catalog client %s: %w", catalogAddr, err)
	}
	defer conn.Close()
	f := &frontend{
		catalog:    catalogpb.NewCatalogClient(conn),
		reviewsURL: reviewsURL,
		http: &http.Client{Timeout: backendTimeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: maxIdlePerHost, IdleConnTimeout: idleTimeout}},
		log: log,
	}
	return serveHTTP(ctx, addr, f.routes(), log, ready)
}
