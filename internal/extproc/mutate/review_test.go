package mutate

import (
	"net/http"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// An empty overwrite of set-cookie (which removes it) followed by an overwrite with a
// value, in one message, must not panic: the second sets the one cookie.
func TestSetCookieEmptyThenOverwrite(t *testing.T) {
	resp := newResp()
	resp.Header.Add("Set-Cookie", "up=1")
	resp.Header.Add("Set-Cookie", "up2=2")
	m := sets(withAction(opt("set-cookie", ""), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
		withAction(opt("set-cookie", "mine=1"), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
	if _, err := ApplyResponse(resp, m, rules(t, nil)); err != nil {
		t.Fatal(err)
	}
	if got := resp.Header["Set-Cookie"]; len(got) != 1 || got[0] != "mine=1" {
		t.Errorf("Set-Cookie %q, want [mine=1]", got)
	}
	// The same in trailers.
	h := http.Header{"Set-Cookie": {"a=1"}}
	if _, err := ApplyTrailers(h, m, rules(t, nil)); err != nil {
		t.Fatal(err)
	}
	if got := h["Set-Cookie"]; len(got) != 1 || got[0] != "mine=1" {
		t.Errorf("trailer Set-Cookie %q, want [mine=1]", got)
	}
}
