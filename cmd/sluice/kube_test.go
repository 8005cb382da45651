package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKubeFlags(t *testing.T) {
	if code, _, errOut := runCLI("kube", "-h"); code != 0 ||
		!strings.Contains(errOut, "-gateway-class-controller") || !strings.Contains(errOut, "-leader-elect") ||
		!strings.Contains(errOut, "-drain-timeout") {
		t.Errorf("kube -h: exit %d, flags:\n%s", code, errOut)
	}
	missing := filepath.Join(t.TempDir(), "nope.kubeconfig")
	if code, _, errOut := runCLI("kube", "--kubeconfig", missing, "--admin-addr", ""); code != 1 || !strings.Contains(errOut, "nope.kubeconfig") {
		t.Errorf("kube with a missing kubeconfig: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI("kube", "extra"); code != 1 || !strings.Contains(errOut, "unexpected arguments") {
		t.Errorf("kube with an argument: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI("kube", "--log-level", "loud"); code != 1 || !strings.Contains(errOut, "--log-level") {
		t.Errorf("kube with a bad log level: exit %d, %q", code, errOut)
	}
}

func TestLeaderNamespace(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "from-env")
	for _, tc := range []struct {
		flags kubeFlags
		want  string
	}{
		{kubeFlags{leaderNS: "lease", namespace: "scoped"}, "lease"},
		{kubeFlags{namespace: "scoped"}, "from-env"},
		{kubeFlags{}, "from-env"},
	} {
		if got := leaderNamespace(tc.flags); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.flags, got, tc.want)
		}
	}
	t.Setenv("POD_NAMESPACE", "")
	if _, err := os.Stat(serviceAccountNamespace); err == nil {
		t.Skip("running in a pod: the service account namespace decides")
	}
	if got := leaderNamespace(kubeFlags{namespace: "scoped"}); got != "scoped" {
		t.Errorf("outside a pod with --namespace: %q, want scoped", got)
	}
	if got := leaderNamespace(kubeFlags{}); got != "default" {
		t.Errorf("outside a pod: %q, want default", got)
	}
}
