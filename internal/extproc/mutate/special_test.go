package mutate

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

func TestApplyResponseStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value    string
		want     int
		rejected int
	}{
		{"201", 201, 0}, {"599", 599, 0}, {"404", 404, 0},
		{"100", 200, 1}, {"199", 200, 1}, {"600", 200, 1}, {"abc", 200, 1}, {"20x", 200, 1}, {"-200", 200, 1},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			resp := newResp()
			out, err := ApplyResponse(resp, sets(opt(":status", tt.value)), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.want || out.Rejected != tt.rejected {
				t.Errorf("status %d rejected %d, want %d and %d", resp.StatusCode, out.Rejected, tt.want, tt.rejected)
			}
			if !strings.HasPrefix(resp.Status, itoa(tt.want)+" ") {
				t.Errorf("Status = %q", resp.Status)
			}
		})
	}
	// Request pseudo-headers mean nothing on a response.
	out, err := ApplyResponse(newResp(), sets(opt(":path", "/x")), nil)
	if err != nil || out.Rejected != 1 {
		t.Errorf(":path on a response: %v, rejected %d", err, out.Rejected)
	}
}

func TestContentLength(t *testing.T) {
	t.Parallel()
	t.Run("request set", func(t *testing.T) {
		t.Parallel()
		req := newReq(t)
		if _, err := ApplyRequest(req, sets(opt("Content-Length", "42")), nil, false); err != nil {
			t.Fatal(err)
		}
		if req.ContentLength != 42 {
			t.Errorf("ContentLength = %d", req.ContentLength)
		}
		eq(t, req.Header["Content-Length"], "42")
	})
	t.Run("request remove with body", func(t *testing.T) {
		t.Parallel()
		req := newReq(t)
		req.Body, req.ContentLength = http.NoBody, 5
		req.Body = nopBody{}
		req.Header.Set("Content-Length", "5")
		if _, err := ApplyRequest(req, removes("content-length"), nil, false); err != nil {
			t.Fatal(err)
		}
		if req.ContentLength != -1 || req.Header.Get("Content-Length") != "" {
			t.Errorf("ContentLength = %d, header %q", req.ContentLength, req.Header.Get("Content-Length"))
		}
	})
	t.Run("response set keeps header consistent", func(t *testing.T) {
		t.Parallel()
		resp := newResp()
		if _, err := ApplyResponse(resp, sets(opt("content-length", "007")), nil); err != nil {
			t.Fatal(err)
		}
		if resp.ContentLength != 7 {
			t.Errorf("ContentLength = %d", resp.ContentLength)
		}
		eq(t, resp.Header["Content-Length"], "7")
	})
	t.Run("response remove", func(t *testing.T) {
		t.Parallel()
		resp := newResp()
		if _, err := ApplyResponse(resp, removes("Content-Length"), nil); err != nil {
			t.Fatal(err)
		}
		if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
			t.Errorf("ContentLength = %d, header %q", resp.ContentLength, resp.Header.Get("Content-Length"))
		}
	})
	t.Run("response append same value", func(t *testing.T) {
		t.Parallel()
		resp := newResp()
		if _, err := ApplyResponse(resp, sets(withAppend(opt("content-length", "5"), true)), nil); err != nil {
			t.Fatal(err)
		}
		eq(t, resp.Header["Content-Length"], "5")
	})
	t.Run("response append other value", func(t *testing.T) {
		t.Parallel()
		_, err := ApplyResponse(newResp(), sets(withAppend(opt("content-length", "6"), true)), nil)
		wantMutationError(t, err)
	})
	t.Run("response add if absent with unknown length", func(t *testing.T) {
		t.Parallel()
		resp := newResp()
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
		if _, err := ApplyResponse(resp, sets(withAction(opt("content-length", "9"), corev3.HeaderValueOption_ADD_IF_ABSENT)), nil); err != nil {
			t.Fatal(err)
		}
		if resp.ContentLength != 9 {
			t.Errorf("ContentLength = %d", resp.ContentLength)
		}
	})
	t.Run("trailers and local replies ignore it", func(t *testing.T) {
		t.Parallel()
		for _, apply := range []func(http.Header, *extprocv3.HeaderMutation, *Rules) (Outcome, error){ApplyTrailers, ApplyLocal} {
			h := http.Header{}
			out, err := apply(h, sets(opt("content-length", "3"), opt(":status", "201"), opt("x-t", "1")), nil)
			if err != nil || out.Rejected != 2 {
				t.Errorf("err %v rejected %d, want 2", err, out.Rejected)
			}
			if !slices.Equal(slices.Sorted(mapsKeys(h)), []string{"X-T"}) {
				t.Errorf("headers %v", h)
			}
		}
	})
}

func TestApplyLocalRules(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	out, err := ApplyLocal(h, sets(opt("Location", "/x"), opt("x-envoy-a", "1")), nil)
	if err != nil || out.Rejected != 1 {
		t.Fatalf("err %v rejected %d", err, out.Rejected)
	}
	eq(t, h["Location"], "/x")
	_, err = ApplyLocal(http.Header{}, sets(opt("x-a", "a\nb")), nil)
	wantMutationError(t, err)
}
