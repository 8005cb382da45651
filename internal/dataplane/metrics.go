package dataplane

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the data plane's Prometheus metrics, labelled by route and backend.
type Metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_requests_total",
			Help: "Requests served, by route, backend and status code.",
		}, []string{"route", "backend", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_request_duration_seconds",
			Help:    "Time from the request's arrival to the end of its response, by route and backend.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "backend"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_upstream_errors_total",
			Help: "Upstream failures, by route, backend and kind (connect, reset, timeout, reset_after_headers).",
		}, []string{"route", "backend", "kind"}),
	}
	reg.MustRegister(m.requests, m.duration, m.upstreamErrors)
	return m
}

func (m *Metrics) observe(ex *exchange, seconds float64) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(ex.Route, ex.Backend, strconv.Itoa(ex.status)).Inc()
	m.duration.WithLabelValues(ex.Route, ex.Backend).Observe(seconds)
}

func (m *Metrics) upstreamError(ex *exchange, kind string) {
	if m == nil {
		return
	}
	m.upstreamErrors.WithLabelValues(ex.Route, ex.Backend, kind).Inc()
}
