//go:build tools

// Package tools pins the echo server the pod runner starts for the suite's echo-basic
// image, so that `go build` in this module builds it at the suite's version.
package tools

import _ "sigs.k8s.io/gateway-api/conformance/echo-basic"
