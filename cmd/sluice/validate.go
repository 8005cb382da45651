package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/sluice-gateway/sluice/internal/provider/file"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// cmdValidate loads and translates a configuration and prints every problem, each with
// its file, document and field. Exit 0 when valid, 1 when not, 2 on usage errors.
func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var configs multiFlag
	fs.Var(&configs, "config", "YAML file or directory of configuration (repeatable)")
	showStatus := fs.Bool("status", false, "also print the status conditions of every Gateway, listener, HTTPRoute, GRPCRoute and TrafficPolicy")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if len(configs) == 0 {
		fmt.Fprintln(stderr, "sluice validate: --config is required")
		return 2
	}
	res, loadErr := file.Load(configs...)
	n := 0
	if loadErr != nil {
		for _, e := range unjoin(loadErr) {
			fmt.Fprintln(stdout, e)
			n++
		}
	}
	result := translate.Translate(res, translate.Options{AllGatewayClasses: true})
	for _, p := range result.Problems {
		fmt.Fprintln(stdout, p)
		n++
	}
	if *showStatus {
		printStatus(stdout, result)
	}
	if n > 0 {
		fmt.Fprintf(stdout, "invalid: %d error(s)\n", n)
		return 1
	}
	listeners, routes := 0, 0
	for _, p := range result.Config.Ports {
		listeners += len(p.Listeners)
		for _, l := range p.Listeners {
			for _, v := range l.VirtualHosts {
				routes += len(v.Routes)
			}
		}
	}
	grpc := ""
	if len(res.GRPCRoutes) > 0 {
		grpc = ", " + count(len(res.GRPCRoutes), "GRPCRoute", "GRPCRoutes")
	}
	fmt.Fprintf(stdout, "valid: %s, %s%s, %s, %s; serving %s, %s, %s\n",
		count(len(res.Gateways), "Gateway", "Gateways"), count(len(res.HTTPRoutes), "HTTPRoute", "HTTPRoutes"), grpc,
		count(len(res.Backends), "Backend", "Backends"), count(len(res.TrafficPolicies), "TrafficPolicy", "TrafficPolicies"),
		count(len(result.Config.Ports), "port", "ports"), count(listeners, "listener", "listeners"), count(routes, "route", "routes"))
	return 0
}

// unjoin flattens errors.Join trees into their leaves.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
