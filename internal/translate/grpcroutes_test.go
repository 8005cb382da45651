package translate

import (
	"regexp"
	"testing"
)

func TestUnanchor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		re             string
		match, noMatch string
	}{
		{re: `^echo\.Echo$`, match: "echo.Echo", noMatch: "echo.Echo2"},
		{re: `(?i)^Echo$`, match: "ECHO", noMatch: "xecho"},
		{re: `^a|^b`, match: "b", noMatch: "c"},
		{re: `(?:^a|^b)c`, match: "bc", noMatch: "ac2"},
		{re: `\Aget.*\z`, match: "getAll", noMatch: "xget"},
		{re: `(^Say$)`, match: "Say", noMatch: "Says"},
		{re: `foo\$`, match: "foo$", noMatch: "foo"},
		{re: `Say.*`, match: "SayHi", noMatch: "Hi"},
		{re: `^$`, match: "", noMatch: "x"},
	}
	for _, tc := range tests {
		// As the data plane uses it: joined into a path, anchored as a whole.
		re := regexp.MustCompile("^(?:/x/(?:" + unanchor(tc.re) + "))$")
		if !re.MatchString("/x/" + tc.match) {
			t.Errorf("unanchor(%q) = %q does not match %q", tc.re, unanchor(tc.re), tc.match)
		}
		if re.MatchString("/x/" + tc.noMatch) {
			t.Errorf("unanchor(%q) = %q matches %q", tc.re, unanchor(tc.re), tc.noMatch)
		}
	}
}
