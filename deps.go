//go:build deps

package deps

import (
	_ "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	_ "github.com/google/cel-go/cel"
	_ "github.com/mccutchen/go-httpbin/v2/httpbin"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.uber.org/goleak"
	_ "golang.org/x/net/http2"
	_ "google.golang.org/grpc"
	_ "sigs.k8s.io/gateway-api/apis/v1"
	_ "sigs.k8s.io/yaml"
	_ "github.com/fsnotify/fsnotify"
)
