// Package sampleproc is the external processor that Sluice's documentation uses as its
// example. It mirrors the behaviour of the widely used "basic sink" processor (the image
// ext-proc-example-basic-sink), so a walkthrough written for Envoy works against Sluice
// unchanged: a client steers the processor with a JSON `instructions` header instead of the
// processor having any logic of its own. That makes it equally useful as a test peer for the
// gateway, because every mutation the gateway must support can be triggered from curl.
//
// The package has no globals and never exits the process, so the gateway's `sluice demo`
// command can run it in-process next to the data plane.
package sampleproc
