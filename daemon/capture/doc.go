// Package capture turns the kernel's connection and data events into tracked
// connections with ordered per-direction byte streams.
//
// The eBPF reader (package bpf) decodes ring buffer records into the types of
// package event and calls a Table, which implements event.Sink, from a single
// goroutine in ring buffer order. The Table keeps one Conn per event.ConnID
// with its process, addresses, role and counters, and hands each direction's
// events to a Stream (the pipeline, which feeds the protocol parsers)
// strictly in stream order, once each, as Segments: the event's bytes and
// the facts of the syscall that moved them (stream offsets, times, the
// kernel's last-event mark and metrics). That is the only way data leaves
// the Table; an Observer hears of the rest (opens, closes, retransmits,
// sweeps).
//
// Why reassembly is needed at all: the kernel side numbers data events per
// connection and direction (Seq) and reports where each chunk sits in the
// byte stream (StreamOffset, Size), but ring buffer records from different
// CPUs can be committed out of order and records are lost when the ring is
// full. The Table therefore holds early events in a small bounded reorder
// buffer, and when a missing event does not show up in time it tells the
// Stream exactly how many bytes are missing (Segment.Gap) instead of
// silently splicing unrelated bytes together, which would desynchronise a
// parser. Events lost at the very end of a stream have no later event to
// reveal them: the close event's byte totals, counted by the kernel in the
// same stream offsets, do, and the Table declares that gap (Segment.Tail)
// before it closes the Stream.
//
// Every structure here is bounded: tracked connections, retained closed
// connections, reorder buffers per direction and buffered bytes in total.
// Hitting a bound is counted in Stats and is resolved by evicting the least
// recently active connection or by declaring a gap, never by growing.
//
// This package is only reassembly: what reads it lives with its own kind,
// the Prometheus view of Stats in package metrics (CaptureCollector) and the
// /api/v1/connections handler over Connections in package api
// (ConnectionsHandler).
package capture
