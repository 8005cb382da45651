package mutate

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"testing"
)

type nopBody struct{}

func (nopBody) Read([]byte) (int, error) { return 0, nil }
func (nopBody) Close() error             { return nil }

func eq(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func same[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func mapsKeys(h http.Header) func(func(string) bool) { return maps.Keys(h) }
