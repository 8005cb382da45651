package main

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseAddressPool(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      []string
		want    string
		wantErr string
	}{
		{in: nil, want: "[]"},
		{in: []string{"10.0.0.2"}, want: "[10.0.0.2]"},
		{in: []string{"10.0.0.2, 10.0.0.9", "10.0.0.5"}, want: "[10.0.0.2 10.0.0.9 10.0.0.5]"},
		{in: []string{"10.0.0.254-10.0.1.1"}, want: "[10.0.0.254 10.0.0.255 10.0.1.0 10.0.1.1]"},
		{in: []string{"10.0.0.5/30"}, want: "[10.0.0.4 10.0.0.5 10.0.0.6 10.0.0.7]"},
		{in: []string{"fd00::1-fd00::2"}, want: "[fd00::1 fd00::2]"},
		{in: []string{"10.0.0.2,10.0.0.1-10.0.0.3"}, wantErr: "10.0.0.2 is listed twice"},
		{in: []string{"10.0.0.3-10.0.0.1"}, wantErr: "before its start"},
		{in: []string{"10.0.0.1-fd00::1"}, wantErr: "another family"},
		{in: []string{"gateway.example.com"}, wantErr: `"gateway.example.com": expected an address`},
		{in: []string{"10.0.0.0/8"}, wantErr: "more than 4096"},
		{in: []string{"10.0.0.0-10.255.255.255"}, wantErr: "more than 4096"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.in, " "), func(t *testing.T) {
			t.Parallel()
			got, err := parseAddressPool(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprint(got); s != tc.want {
				t.Fatalf("got %s, want %s", s, tc.want)
			}
		})
	}
}
