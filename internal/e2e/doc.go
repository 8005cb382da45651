// Package e2e holds end-to-end tests of external processing: real YAML configuration served
// by app.Run on loopback, a real upstream, a real gRPC processor and a real HTTP client.
// It has no non-test code; this file only makes the package exist.
package e2e
