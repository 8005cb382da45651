package dataplane

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the data plane's Prometheus metrics, labelled by route and backend.
type Metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	retries        *prometheus.CounterVec
	retryOverflows *prometheus.CounterVec
	ejections      *prometheus.CounterVec
	mirrors        *prometheus.CounterVec
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
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_upstream_retries_total",
			Help: "Upstream tries sent again by a route's retry policy, by route and the backend of the try retried.",
		}, []string{"route", "backend"}),
		retryOverflows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_upstream_retry_overflow_total",
			Help: "Retries a route's retry policy asked for but the backend's retry budget refused (the failed try's answer went to the client), by route and backend.",
		}, []string{"route", "backend"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_upstream_endpoint_ejections_total",
			Help: "Endpoints left out of their backend's rotation after a failed connection, by backend and endpoint (host:port).",
		}, []string{"backend", "endpoint"}),
		mirrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_mirror_requests_total",
			Help: "Request copies for a route's RequestMirror filters, by route, mirror backend and outcome (ok, failed, dropped, no_healthy_upstream, body_not_replayable).",
		}, []string{"route", "backend", "outcome"}),
	}
	reg.MustRegister(m.requests, m.duration, m.upstreamErrors, m.retries, m.retryOverflows, m.ejections, m.mirrors)
	return m
}

func (m *Metrics) observe(ex *exchange, seconds float64) {
	if m == nil {
		return
	}
	if rm := m.cached(ex); rm != nil {
		rm.counter(ex.status).Inc()
		rm.duration.Observe(seconds)
		return
	}
	m.requests.WithLabelValues(ex.Route, ex.Backend, strconv.Itoa(ex.status)).Inc()
	m.duration.WithLabelValues(ex.Route, ex.Backend).Observe(seconds)
}

// refused counts a request refused before routing, with empty route and backend labels.
func (m *Metrics) refused(code int) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues("", "", strconv.Itoa(code)).Inc()
}

// metricsSlot caches, in a compiled route's backend, the metric children of that route
// and backend, so that a request does not look its labels up (hashing, a lock, an
// allocation for the status code) each time.
type metricsSlot struct{ p atomic.Pointer[routeMetrics] }

type routeMetrics struct {
	m              *Metrics
	route, backend string
	duration       prometheus.Observer
	// codes are the request counters by status code seen so far, copied on write.
	codes atomic.Pointer[[]codeCounter]
}

type codeCounter struct {
	code int
	c    prometheus.Counter
}

// cached returns the children for the exchange's labels, nil when it has no slot.
func (m *Metrics) cached(ex *exchange) *routeMetrics {
	s := ex.metrics
	if s == nil {
		return nil
	}
	rm := s.p.Load()
	if rm == nil || rm.m != m || rm.route != ex.Route || rm.backend != ex.Backend {
		rm = &routeMetrics{m: m, route: ex.Route, backend: ex.Backend,
			duration: m.duration.WithLabelValues(ex.Route, ex.Backend)}
		s.p.Store(rm)
	}
	return rm
}

func (rm *routeMetrics) counter(code int) prometheus.Counter {
	var cur []codeCounter
	if p := rm.codes.Load(); p != nil {
		cur = *p
		for i := range cur {
			if cur[i].code == code {
				return cur[i].c
			}
		}
	}
	c := rm.m.requests.WithLabelValues(rm.route, rm.backend, strconv.Itoa(code))
	if len(cur) < 16 {
		// A lost race only loses a cache entry: WithLabelValues returns the same child.
		next := append(append(make([]codeCounter, 0, len(cur)+1), cur...), codeCounter{code, c})
		rm.codes.Store(&next)
	}
	return c
}

func (m *Metrics) upstreamError(ex *exchange, kind string) {
	if m == nil {
		return
	}
	m.upstreamErrors.WithLabelValues(ex.Route, ex.Backend, kind).Inc()
}

// retried counts a try of the exchange's route and backend about to be sent again.
func (m *Metrics) retried(ex *exchange) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(ex.Route, ex.Backend).Inc()
}

// retryOverflow counts a retry the budget of ex's backend refused.
func (m *Metrics) retryOverflow(ex *exchange) {
	if m == nil {
		return
	}
	m.retryOverflows.WithLabelValues(ex.Route, ex.Backend).Inc()
}

// ejected counts an endpoint left out of its backend's rotation.
func (m *Metrics) ejected(backend, endpoint string) {
	if m == nil {
		return
	}
	m.ejections.WithLabelValues(backend, endpoint).Inc()
}

// mirrored counts a copy of a request of route for its mirror backend, by outcome.
func (m *Metrics) mirrored(route, backend, outcome string) {
	if m == nil {
		return
	}
	m.mirrors.WithLabelValues(route, backend, outcome).Inc()
}
