package capture

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
)

func TestConnInfoJSONShape(t *testing.T) {
	tab, _ := newTestTable(t, Config{
		ContainerID: func(cg uint64) string {
			if cg == 77 {
				return strings.Repeat("ab", 32)
			}
			return ""
		},
		Pods: func(id uint32) (string, string, bool) { return "shop", "cart-0", id == 3 },
	})
	tab.ConnOpen(openEv(42, 100, 5, event.RoleClient, event.Timestamp(time.Second)))
	g := newGen(42, 100, 5, 1000)
	g.ts = event.Timestamp(2 * time.Second)
	feed(tab, g.syscall(event.Egress, []byte("ping"))...)

	b, err := json.Marshal(tab.Connections(Filter{}))
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d connections", len(got))
	}
	c := got[0]
	want := map[string]any{
		"id": 42.0, "podID": 3.0, "namespace": "shop", "pod": "cart-0", "pid": 100.0, "comm": "curl",
		"cgroupID": 77.0, "containerID": strings.Repeat("ab", 32), "fd": 5.0,
		"local": "10.0.0.1:40000", "remote": "10.0.0.2:80", "role": "client", "state": "open", "openSeen": true,
		"bytesSent": 4.0, "bytesRecv": 0.0, "syscallsSent": 1.0, "syscallsRecv": 0.0, "gaps": 0.0, "gapBytes": 0.0,
		"truncated": 0.0,
		"firstSeen": testBoot.Add(time.Second).Format(time.RFC3339Nano),
		"lastSeen":  testBoot.Add(2*time.Second + 1500).Format(time.RFC3339Nano),
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %#v, want %#v", k, c[k], v)
		}
	}
	conn, ok := c["connect"].(map[string]any)
	if !ok {
		t.Fatalf("connect = %#v, want an object", c["connect"])
	}
	if conn["success"] != true || conn["syscall"] != "connect" ||
		conn["start"] != testBoot.Add(time.Second).Format(time.RFC3339Nano) ||
		conn["end"] != testBoot.Add(time.Second+1000).Format(time.RFC3339Nano) {
		t.Errorf("connect = %#v", conn)
	}
	if _, ok := c["close"]; ok {
		t.Error("open connection has a close object")
	}

	tab.ConnClose(event.ConnClose{Conn: 42, Proc: testProc(100), FD: 5, Start: 5, End: event.Timestamp(3 * time.Second), BytesSent: 4, BytesRecv: 9})
	b, _ = json.Marshal(tab.Connections(Filter{}))
	got = nil
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	cl, ok := got[0]["close"].(map[string]any)
	if !ok || cl["kernelBytesSent"] != 4.0 || cl["kernelBytesRecv"] != 9.0 ||
		cl["time"] != testBoot.Add(3*time.Second).Format(time.RFC3339Nano) ||
		got[0]["state"] != "closed" || got[0]["closeReason"] != "closed" {
		t.Errorf("closed connection JSON: %v", got[0])
	}
}

func TestConnectionsFiltersAndOrders(t *testing.T) {
	pods := map[uint32][2]string{1: {"shop", "cart-0"}, 2: {"shop", "web-0"}}
	tab, _ := newTestTable(t, Config{Pods: func(id uint32) (string, string, bool) {
		p, ok := pods[id]
		return p[0], p[1], ok
	}})
	// Conns 1..6, first seen in id order; odd ids in pod 1, even in pod 2;
	// 1 and 2 closed.
	for id := event.ConnID(1); id <= 6; id++ {
		o := openEv(id, 100+uint32(id), 5, event.RoleServer, event.Timestamp(id)*1000)
		o.Proc.PodID = 2 - uint32(id)%2
		tab.ConnOpen(o)
	}
	tab.ConnClose(closeEv(1, 101, 5, 10_000))
	tab.ConnClose(closeEv(2, 102, 5, 10_000))

	for _, tc := range []struct {
		f    Filter
		want []uint64
	}{
		{Filter{}, []uint64{6, 5, 4, 3, 2, 1}},
		{Filter{State: "open"}, []uint64{6, 5, 4, 3}},
		{Filter{State: "closed"}, []uint64{2, 1}},
		{Filter{Namespace: "shop", Pod: "cart-0"}, []uint64{5, 3, 1}},
		{Filter{Namespace: "shop", Pod: "web-0", State: "closed"}, []uint64{2}},
		{Filter{Namespace: "other", Pod: "x"}, []uint64{}},
		{Filter{Limit: 2}, []uint64{6, 5}},
	} {
		if g := ids(tab.Connections(tc.f)); len(g) != len(tc.want) || (len(g) > 0 && !equalIDs(g, tc.want)) {
			t.Errorf("%+v: ids %v, want %v", tc.f, g, tc.want)
		}
	}
}

func equalIDs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
