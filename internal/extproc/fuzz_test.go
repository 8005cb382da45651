package extproc

import (
	"strings"
	"sync"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// FuzzProcessingResponse answers every message of an exchange with an arbitrary
// ProcessingResponse (header, body and trailer mutations, immediate responses, mode
// overrides, anything the fuzzer builds). Whatever the answer, the gateway must not panic,
// and the client must get a well-formed response or a clean error: never a hang.
func FuzzProcessingResponse(f *testing.F) {
	seeds := []*extprocv3.ProcessingResponse{
		reqHeadersAns(common(hm([]string{"x-a"}, set("x-b", "c")), []byte("new body"))),
		reqHeadersAns(common(hm(nil, set(":path", "/x"), set(":status", "99"), set("content-length", "3")), nil)),
		reqHeadersAns(&extprocv3.CommonResponse{Status: extprocv3.CommonResponse_CONTINUE_AND_REPLACE,
			BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}}),
		respHeadersAns(common(hm(nil, set("transfer-encoding", "chunked"), set("connection", "close")), nil)),
		reqBodyAns(common(nil, []byte("replaced"))),
		immediate(302, "moved", hm(nil, set("location", "/elsewhere"), set("bad\r\nname", "v"))),
		immediate(99, "", nil),
		{},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0))
		f.Add(b, uint8(1))
	}
	var mu sync.Mutex
	var answer *extprocv3.ProcessingResponse
	p := newProc(f, answerWith(func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		mu.Lock()
		defer mu.Unlock()
		return answer
	}))
	modes := []v1alpha1.BodySendMode{v1alpha1.BodyBuffered, v1alpha1.BodyStreamed}
	gws := make([]*gateway, len(modes))
	for i, m := range modes {
		gws[i] = newGateway(f, spec(func(s *v1alpha1.ExtProc) {
			o := opts(s)
			o.RequestBodyMode, o.ResponseBodyMode = m, m
			o.RequestTrailerMode, o.ResponseTrailerMode = v1alpha1.Send, v1alpha1.Send
			s.ProcessingOptions.AllowModeOverride = true
		}), p)
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		resp := &extprocv3.ProcessingResponse{}
		if proto.Unmarshal(data, resp) != nil {
			return
		}
		mu.Lock()
		answer = resp
		mu.Unlock()
		g := gws[int(mode)%len(gws)]
		// The harness reports through its testing.TB: the fuzz target's, not the F's.
		g.t = t
		res := g.do("POST", "/fuzz", strings.NewReader("request body"), "X-Client", "1")
		if res.Err == nil && (res.Status < 200 || res.Status > 599) {
			t.Fatalf("client got status %d", res.Status)
		}
		for k, vv := range res.Header {
			for _, v := range vv {
				if strings.ContainsAny(k+v, "\r\n\x00") {
					t.Fatalf("client got header %q: %q", k, v)
				}
			}
		}
		drain(g)
	})
}

// drain empties the recording channels so that a long fuzz run never blocks on them.
func drain(g *gateway) {
	for {
		select {
		case <-g.exchanges:
		case <-g.doneErrs:
		case <-g.up.reqs:
		default:
			return
		}
	}
}
