package extproc

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ext_proc metrics, labelled by processor (the policy's namespace/name).
// One Metrics may serve many pools and reloads; a nil *Metrics records nothing.
type Metrics struct {
	streams   *prometheus.CounterVec
	messages  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	failOpen  *prometheus.CounterVec
	immediate *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
// Registering twice with the same registry reuses the collectors already there.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "extproc", Name: "streams_total",
			Help: "Process streams opened to the external processor.",
		}, []string{"processor"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "extproc", Name: "messages_total",
			Help: "Messages sent to the external processor, by phase.",
		}, []string{"processor", "phase"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sluice", Subsystem: "extproc", Name: "round_trip_seconds",
			Help:    "Time from sending a message to receiving its answer, by phase.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"processor", "phase"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "extproc", Name: "errors_total",
			Help: "Processor failures, by kind (unavailable, timeout, spurious, mutation_rejected, stream_error, too_large).",
		}, []string{"processor", "kind"}),
		failOpen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "extproc", Name: "fail_open_total",
			Help: "Requests that continued without the processor after a failure (failureMode FailOpen).",
		}, []string{"processor"}),
		immediate: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "extproc", Name: "immediate_responses_total",
			Help: "Requests answered by the processor itself.",
		}, []string{"processor"}),
	}
	if reg != nil {
		m.streams = register(reg, m.streams)
		m.messages = register(reg, m.messages)
		m.latency = register(reg, m.latency)
		m.errors = register(reg, m.errors)
		m.failOpen = register(reg, m.failOpen)
		m.immediate = register(reg, m.immediate)
	}
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		// A conflicting collector under our name is a programming error; keep ours
		// unregistered rather than crash the gateway over metrics.
	}
	return c
}

// procMetrics are one processor's children, resolved once per Build so that the request
// path never looks labels up.
type procMetrics struct {
	streams   prometheus.Counter
	messages  [numPhases]prometheus.Counter
	latency   [numPhases]prometheus.Observer
	errors    [numKinds]prometheus.Counter
	failOpen  prometheus.Counter
	immediate prometheus.Counter
}

func (m *Metrics) forProcessor(name string) *procMetrics {
	if m == nil {
		return nil
	}
	pm := &procMetrics{
		streams:   m.streams.WithLabelValues(name),
		failOpen:  m.failOpen.WithLabelValues(name),
		immediate: m.immediate.WithLabelValues(name),
	}
	for p := phase(0); p < numPhases; p++ {
		pm.messages[p] = m.messages.WithLabelValues(name, p.String())
		pm.latency[p] = m.latency.WithLabelValues(name, p.String())
	}
	for k := failKind(1); k < numKinds; k++ {
		if k.metric() != "" {
			pm.errors[k] = m.errors.WithLabelValues(name, k.metric())
		}
	}
	return pm
}

func (pm *procMetrics) streamOpened() {
	if pm != nil {
		pm.streams.Inc()
	}
}

func (pm *procMetrics) sent(p phase) {
	if pm != nil {
		pm.messages[p].Inc()
	}
}

func (pm *procMetrics) answered(p phase, since time.Time) {
	if pm != nil {
		pm.latency[p].Observe(time.Since(since).Seconds())
	}
}

func (pm *procMetrics) failed(k failKind) {
	if pm != nil && pm.errors[k] != nil {
		pm.errors[k].Inc()
	}
}

func (pm *procMetrics) openPass() {
	if pm != nil {
		pm.failOpen.Inc()
	}
}

func (pm *procMetrics) immediateReply() {
	if pm != nil {
		pm.immediate.Inc()
	}
}
