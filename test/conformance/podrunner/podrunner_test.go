package podrunner

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The image table is how the conformance manifests' images find their binaries: one
// repository entry must cover every tag and digest the suite uses.
func TestProgramLookup(t *testing.T) {
	r := &Runner{cfg: Config{Images: map[string]Program{
		"registry.k8s.io/gateway-api/echo-basic":     {Path: "/echo"},
		"registry.k8s.io/gateway-api/echo-basic:old": {Path: "/old"},
		"localhost:5000/x":                           {Path: "/x"},
	}}}
	for image, want := range map[string]string{
		"registry.k8s.io/gateway-api/echo-basic:v1.5.1":       "/echo",
		"registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3": "/echo",
		"registry.k8s.io/gateway-api/echo-basic@sha256:abc":   "/echo",
		"registry.k8s.io/gateway-api/echo-basic:old":          "/old",
		"localhost:5000/x:1":                                  "/x",
		"localhost:5000/x":                                    "/x",
		"registry.k8s.io/coredns/coredns:v1.12.2":             "",
		"registry.k8s.io/gateway-api/echo-basic-other:v1.5.1": "",
	} {
		p, ok := r.program(image)
		if ok != (want != "") || p.Path != want {
			t.Errorf("program(%q) = %q, %v; want %q", image, p.Path, ok, want)
		}
	}
}

// Paths into mounted volumes (the TLS backends' TLS_SERVER_CERT) must point at the
// pod's folder, and nothing else may change.
func TestRewriteAndProject(t *testing.T) {
	mounts := map[string]string{"/etc/secret-volume": "/pods/a/volumes/secret-volume"}
	for in, want := range map[string]string{
		"/etc/secret-volume/crt": "/pods/a/volumes/secret-volume/crt",
		"/etc/secret-volume":     "/pods/a/volumes/secret-volume",
		"/etc/secret-volumes/x":  "/etc/secret-volumes/x",
		"3000":                   "3000",
	} {
		if got := rewrite(in, mounts); got != want {
			t.Errorf("rewrite(%q) = %q, want %q", in, got, want)
		}
	}
	data := map[string][]byte{"tls.crt": []byte("c"), "tls.key": []byte("k")}
	got, err := project(data, []corev1.KeyToPath{{Key: "tls.crt", Path: "crt"}})
	if err != nil || len(got) != 1 || string(got["crt"]) != "c" {
		t.Errorf("project with items = %v, %v", got, err)
	}
	if _, err := project(data, []corev1.KeyToPath{{Key: "missing", Path: "m"}}); err == nil {
		t.Error("project with a missing key: no error")
	}
	if got, _ := project(data, nil); len(got) != 2 {
		t.Errorf("project without items = %v, want every key", got)
	}
}
