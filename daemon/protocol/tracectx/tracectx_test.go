package tracectx

import "testing"

func collect(kv ...string) (Context, int) {
	var c Collector
	for i := 0; i < len(kv); i += 2 {
		c.Observe([]byte(kv[i]), []byte(kv[i+1]))
	}
	return c.Result()
}

func TestSW8(t *testing.T) {
	ctx, bad := collect("SW8", "1-MTIzNDU2Nzg5MA==-YWJjZGVmMTIzNDU2-3-c2VydmljZQ==-aW5zdGFuY2U=-L2FwaS91c2Vycw==-MTAuMC4wLjE6ODA4MA==")
	if bad != 0 || ctx.Kind != KindSW8 || ctx.TraceID != "1234567890" || ctx.SegmentID != "abcdef123456" || ctx.SpanID != "3" || !ctx.Sampled {
		t.Fatalf("%+v bad=%d", ctx, bad)
	}
}

func TestTraceparent(t *testing.T) {
	ctx, bad := collect("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if bad != 0 || ctx.Kind != KindTraceparent || ctx.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || ctx.SpanID != "00f067aa0ba902b7" || !ctx.Sampled {
		t.Fatalf("%+v", ctx)
	}
}

func TestB3SingleAndMulti(t *testing.T) {
	ctx, bad := collect("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90")
	if bad != 0 || ctx.Kind != KindB3 || ctx.ParentSpanID != "05e3ac9a4f6e3b90" || ctx.Sampled {
		t.Fatalf("%+v", ctx)
	}
	ctx, bad = collect("X-B3-TraceId", "463ac35c9f6413ad", "X-B3-SpanId", "a2fb4a1d1a96d312", "X-B3-Sampled", "1")
	if bad != 0 || ctx.Kind != KindB3 || ctx.TraceID != "463ac35c9f6413ad" || ctx.SpanID != "a2fb4a1d1a96d312" || !ctx.Sampled {
		t.Fatalf("%+v", ctx)
	}
	if ctx, bad = collect("b3", "0"); bad != 0 || ctx.Kind != KindNone {
		t.Fatalf("lone sampling state: %+v bad=%d", ctx, bad)
	}
}

func TestPreferenceAndMalformedCounted(t *testing.T) {
	ctx, bad := collect(
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"sw8", "1-!!!-x-y",
		"b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1")
	if bad != 1 || ctx.Kind != KindTraceparent {
		t.Fatalf("%+v bad=%d", ctx, bad)
	}
}

func TestMalformedValuesRejected(t *testing.T) {
	for _, v := range []string{
		"", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
	} {
		if _, ok := ParseTraceparent(v); ok {
			t.Errorf("traceparent %q accepted", v)
		}
	}
	for _, v := range []string{"1-a-b-c-d-e-f", "2-MTI=-YWI=-1-cw==-aQ==-ZQ==-cA==", "1-MTI=-YWI=-x-cw==-aQ==-ZQ==-cA=="} {
		if _, ok := ParseSW8(v); ok {
			t.Errorf("sw8 %q accepted", v)
		}
	}
	for _, v := range []string{"abc-def", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-x", "80f198ee56343ba864fe8b2a57d3eff7"} {
		if _, ok := ParseB3(v); ok {
			t.Errorf("b3 %q accepted", v)
		}
	}
}

// FuzzTraceContext: any header name/value pair is either a context or
// ignored; never a panic, and an accepted context has ids.
func FuzzTraceContext(f *testing.F) {
	f.Add("sw8", "1-MTIzNDU2Nzg5MA==-YWJjZGVmMTIzNDU2-3-c2VydmljZQ==-aW5zdGFuY2U=-L2FwaS91c2Vycw==-MTAuMC4wLjE6ODA4MA==")
	f.Add("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")
	f.Add("x-b3-traceid", "463ac35c9f6413ad")
	f.Fuzz(func(t *testing.T, name, value string) {
		var c Collector
		c.Observe([]byte(name), []byte(value))
		c.Observe([]byte("x-b3-spanid"), []byte("a2fb4a1d1a96d312"))
		ctx, _ := c.Result()
		if ctx.Kind != KindNone && (ctx.TraceID == "" || ctx.SpanID == "") {
			t.Fatalf("accepted context without ids: %+v", ctx)
		}
	})
}
