package extproc

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"
)

// stream is one Process stream. In the common (synchronous) case the request's goroutine
// sends a message and then receives its answer itself: no goroutine of ours exists, and
// the per-message timeout is a timer that cancels the stream's context. Observability and
// full-duplex streams have a receiver goroutine instead (see async.go).
type stream struct {
	cs     extprocv3.ExternalProcessor_ProcessClient
	ctx    context.Context
	cancel context.CancelCauseFunc
	// timer cancels ctx with errMessageTimeout; one per stream, re-armed per message.
	timer *time.Timer

	sendClosed bool
	// finished: gRPC has released the stream (Recv returned an error, or we cancelled).
	finished bool

	async *receiver
	// sendMu orders senders: a full-duplex body pump sends beside Response.
	sendMu sync.Mutex
	// deadline resets an asynchronous stream that the processor does not end in time.
	deadline atomic.Pointer[time.Timer]
}

func (f *factory) open(parent context.Context) (*stream, error) {
	ctx, cancel := context.WithCancelCause(parent)
	sctx := ctx
	if f.md != nil {
		sctx = metadata.NewOutgoingContext(ctx, f.md)
	}
	cs, err := f.client.Process(sctx)
	if err != nil {
		cancel(errStreamDone)
		return nil, fmt.Errorf("opening processor stream: %w", err)
	}
	f.m.streamOpened()
	return &stream{cs: cs, ctx: ctx, cancel: cancel}, nil
}

// arm starts the per-message timer; d <= 0 times out at once.
func (s *stream) arm(d time.Duration) {
	if d <= 0 {
		s.cancel(errMessageTimeout)
		return
	}
	if s.timer == nil {
		s.timer = time.AfterFunc(d, func() { s.cancel(errMessageTimeout) })
		return
	}
	s.timer.Reset(d)
}

// disarm stops the timer and reports whether it had not fired yet.
func (s *stream) disarm() bool {
	if s.timer == nil {
		return s.ctx.Err() == nil
	}
	return s.timer.Stop() && s.ctx.Err() == nil
}

// send sends msg; when the processor already ended the stream, the status gRPC reports
// on Recv is the error that matters.
func (s *stream) send(msg *extprocv3.ProcessingRequest) error {
	s.sendMu.Lock()
	err := s.cs.Send(msg)
	s.sendMu.Unlock()
	if err == io.EOF && s.async != nil {
		<-s.async.dead
		return s.async.err
	}
	if err == io.EOF {
		_, err = s.cs.Recv()
		if err == nil {
			err = fmt.Errorf("processor sent a message after its stream failed")
		}
		s.finished = true
	}
	return err
}

// closeSend half-closes the stream: nothing more will be sent.
func (s *stream) closeSend() {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if !s.sendClosed {
		s.sendClosed = true
		_ = s.cs.CloseSend()
	}
}

// drain waits at most grace for the processor to end the stream after our half-close,
// so that a processor that returns on EOF sees a graceful close rather than a reset.
func (s *stream) drain(grace time.Duration) {
	if s.finished {
		return
	}
	s.closeSend()
	if s.ctx.Err() == nil {
		s.arm(grace)
		_, _ = s.cs.Recv()
		s.disarm()
	}
	s.abort()
}

// abort releases the stream at once (a reset, if the processor has not ended it).
func (s *stream) abort() {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.finished = true
	s.cancel(errStreamDone)
}
